#pragma once
// The endpoints the router may pick from. Discovery replaces the whole list when its sources
// change (flags, a watched file, DNS); an endpoint that stays keeps its object, id and live state,
// one that goes is dropped once no request holds it, and observers (the scraper, the KV-event
// subscriber) hear of both.
//
// Threading: snapshot() is cheap and safe from any thread (a shared_ptr to an immutable vector);
// set() and the observer calls are serialised by the set's mutex.
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "router/endpoint.hpp"

namespace llmd::router {

using EndpointList = std::vector<std::shared_ptr<Endpoint>>;

class EndpointSet {
 public:
  struct Observer {
    std::function<void(const std::shared_ptr<Endpoint>&)> added, removed;
  };

  // Observers see the endpoints already present at once (as added).
  void observe(Observer o);
  // Replaces the list; specs equal to a present one (address and labels) keep it.
  void set(const std::vector<EndpointSpec>& specs);
  std::shared_ptr<const EndpointList> snapshot() const;

 private:
  mutable std::mutex mu_;
  std::shared_ptr<const EndpointList> list_ = std::make_shared<const EndpointList>();
  std::vector<Observer> observers_;
  EndpointId next_id_ = 0;
};

}  // namespace llmd::router
