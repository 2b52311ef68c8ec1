#include "router/endpoint_set.hpp"

#include <algorithm>

namespace llmd::router {

void EndpointSet::observe(Observer o) {
  std::lock_guard lock(mu_);
  if (o.added)
    for (const auto& e : *list_) o.added(e);
  observers_.push_back(std::move(o));
}

void EndpointSet::set(const std::vector<EndpointSpec>& specs) {
  std::lock_guard lock(mu_);
  auto next = std::make_shared<EndpointList>();
  std::vector<std::shared_ptr<Endpoint>> added;
  for (const EndpointSpec& s : specs) {
    if (std::any_of(next->begin(), next->end(), [&](const auto& e) { return e->spec() == s; }))
      continue;  // dup
    const auto it = std::find_if(list_->begin(), list_->end(), [&](const auto& e) { return e->spec() == s; });
    if (it != list_->end()) {
      next->push_back(*it);
    } else {
      next->push_back(std::make_shared<Endpoint>(next_id_++, s));
      added.push_back(next->back());
    }
  }
  std::vector<std::shared_ptr<Endpoint>> removed;
  for (const auto& e : *list_)
    if (std::find(next->begin(), next->end(), e) == next->end()) removed.push_back(e);
  list_ = std::move(next);
  for (const Observer& o : observers_) {
    if (o.removed)
      for (const auto& e : removed) o.removed(e);
    if (o.added)
      for (const auto& e : added) o.added(e);
  }
}

std::shared_ptr<const EndpointList> EndpointSet::snapshot() const {
  std::lock_guard lock(mu_);
  return list_;
}

}  // namespace llmd::router
