#pragma once
// Stop strings over streamed text: text is released only once no stop string can still begin in
// it, so a client never sees part of a stop string (OpenAI's semantics: the stop string and all
// after it are left out of the output).
#include <string>
#include <string_view>
#include <vector>

namespace llmd::server {

class StopMatcher {
 public:
  explicit StopMatcher(std::vector<std::string> stops);

  // Adds newly decoded text; returns what can be sent now. After a stop string is seen, stopped()
  // is true and the text before it has been returned.
  std::string push(std::string_view text);
  // The text held back, when generation ends for another reason.
  std::string flush();
  bool stopped() const { return stopped_; }

 private:
  std::vector<std::string> stops_;
  std::string pending_;
  bool stopped_ = false;
};

}  // namespace llmd::server
