#pragma once
// One child process of `llmd up`: started in a process group of its own (a terminal's Ctrl-C reaches
// the supervisor only, which stops the children in order), killed with the supervisor if it dies
// (PR_SET_PDEATHSIG), its stdout and stderr read through one pipe whose lines come out prefixed.
//
// Threading: the supervisor's loop thread.
#include <sys/types.h>

#include <cstdio>
#include <map>
#include <string>
#include <vector>

namespace llmd::cluster {

class ChildProcess {
 public:
  // Starts `binary` with `args` (argv[1..]) and `env` added to ours. Throws llmd::Error when it cannot
  // be started (fork or pipe failing; a binary that does not exist exits 127 instead).
  ChildProcess(const std::string& binary, const std::vector<std::string>& args,
               const std::map<std::string, std::string>& env);
  ~ChildProcess();  // SIGKILL and reap if still running
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  pid_t pid() const { return pid_; }
  int output_fd() const { return out_; }  // -1 once its end was read

  // Reads what the child wrote and writes each whole line to `sink` as "[prefix] line"; false at EOF.
  bool pump(const std::string& prefix, std::FILE* sink);
  // Sends `sig` to the child's process group (what it started goes too).
  void signal(int sig) const;
  // Reaps without blocking; true once the child has exited, with waitpid's status in `status`.
  bool reap(int& status);
  bool exited() const { return exited_; }

 private:
  pid_t pid_ = -1;
  int out_ = -1;
  bool exited_ = false;
  std::string partial_;  // a line not ended yet
};

// "exited with status 3" / "killed by signal 9 (Killed)".
std::string describe_exit(int status);

}  // namespace llmd::cluster
