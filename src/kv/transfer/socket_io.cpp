#include "kv/transfer/socket_io.hpp"

namespace llmd::kv::transfer {

void set_transfer_options(tcp::socket& s, int buffer_bytes) {
  error_code ignored;  // a kernel that caps the buffers (net.core.*mem_max) still works, only slower
  s.set_option(tcp::no_delay(true), ignored);
  s.set_option(asio::socket_base::send_buffer_size(buffer_bytes), ignored);
  s.set_option(asio::socket_base::receive_buffer_size(buffer_bytes), ignored);
}

}  // namespace llmd::kv::transfer
