#include "kv/event_publisher.hpp"

#include <chrono>
#include <zmq.hpp>

#include "common/error.hpp"

namespace llmd::kv {

struct EventPublisher::Impl {
  zmq::context_t ctx{1};
  zmq::socket_t pub{ctx, zmq::socket_type::pub};
};

namespace {

double now_seconds() {
  using namespace std::chrono;
  return duration<double>(system_clock::now().time_since_epoch()).count();
}

constexpr size_t kMaxSpare = 4;

}  // namespace

EventPublisher::EventPublisher(EventPublisherConfig config) : config_(std::move(config)), impl_(new Impl) {
  if (config_.topic.empty()) fail("KV events: empty topic");
  try {
    impl_->pub.set(zmq::sockopt::sndhwm, config_.send_hwm);
    impl_->pub.set(zmq::sockopt::linger, 500);
    // An IPv6 literal ("tcp://[::1]:5557") needs the option before bind.
    if (config_.endpoint.find('[') != std::string::npos) impl_->pub.set(zmq::sockopt::ipv6, 1);
    impl_->pub.bind(config_.endpoint);
    bound_endpoint_ = impl_->pub.get(zmq::sockopt::last_endpoint);
  } catch (const zmq::error_t& e) {
    fail("KV events: cannot bind ZMQ PUB to '{}': {}", config_.endpoint, e.what());
  }
  thread_ = std::thread([this] { run(); });
}

EventPublisher::~EventPublisher() {
  shutdown();
}

void EventPublisher::block_stored(std::span<const BlockHash> hashes, const BlockHash* parent,
                                  std::span<const int32_t> token_ids, int32_t block_size) {
  // Bounded even when the engine never flushes: a batch as large as the whole queue cannot be sent.
  if (current_.weight() + hashes.size() > config_.max_queued_blocks) {
    dropped_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  current_.add_stored(hashes, parent, token_ids, block_size);
}

void EventPublisher::block_removed(std::span<const BlockHash> hashes) {
  if (current_.weight() + hashes.size() > config_.max_queued_blocks) {
    dropped_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  current_.add_removed(hashes);
}

void EventPublisher::all_blocks_cleared() {
  if (current_.weight() + 1 > config_.max_queued_blocks) {
    dropped_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  current_.add_cleared();
}

void EventPublisher::flush() {
  if (current_.empty()) return;
  const double ts = now_seconds();
  {
    std::lock_guard lock(mu_);
    if (stopping_ || queued_blocks_ + current_.weight() > config_.max_queued_blocks) {
      dropped_.fetch_add(current_.events().size(), std::memory_order_relaxed);
      current_.clear();
      return;
    }
    queued_blocks_ += current_.weight();
    queue_.emplace_back(ts, std::move(current_));
    // Take back a sent batch's buffers so the engine side does not allocate in steady state.
    if (!spare_.empty()) {
      current_ = std::move(spare_.back());
      spare_.pop_back();
    } else {
      current_ = KvEventBatch{};
    }
  }
  cv_.notify_one();
}

void EventPublisher::run() {
  std::string payload;
  const zmq::const_buffer topic(config_.topic.data(), config_.topic.size());
  uint64_t seq = 0;
  for (;;) {
    std::pair<double, KvEventBatch> item;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, and everything was sent
      item = std::move(queue_.front());
      queue_.pop_front();
    }
    encode_payload(item.second, item.first, config_.dp_rank, config_.medium, payload);
    const std::string seq_bytes = encode_sequence(seq++);
    try {
      // PUB never blocks: with no subscriber or past the HWM the message is discarded by ZMQ.
      impl_->pub.send(topic, zmq::send_flags::sndmore | zmq::send_flags::dontwait);
      impl_->pub.send(zmq::buffer(seq_bytes), zmq::send_flags::sndmore | zmq::send_flags::dontwait);
      impl_->pub.send(zmq::buffer(payload), zmq::send_flags::dontwait);
      sent_.fetch_add(1, std::memory_order_relaxed);
    } catch (const zmq::error_t&) {
      dropped_.fetch_add(item.second.events().size(), std::memory_order_relaxed);
    }
    {
      std::lock_guard lock(mu_);
      queued_blocks_ -= item.second.weight();
      if (spare_.size() < kMaxSpare) {
        item.second.clear();
        spare_.push_back(std::move(item.second));
      }
    }
  }
}

void EventPublisher::shutdown() {
  if (shut_down_) return;
  shut_down_ = true;
  flush();
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_one();
  if (thread_.joinable()) thread_.join();
  impl_->pub.close();  // lingers up to 500 ms for subscribers still reading
}

}  // namespace llmd::kv
