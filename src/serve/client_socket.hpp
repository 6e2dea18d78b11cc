#pragma once
// The client's side of a connection a request handler is answering:
// whether the client is still there. cpp-httplib 0.11 hands a handler
// neither its socket nor a way to ask (later versions have
// Request::is_connection_closed), so the socket is found by the
// connection's addresses.
#include <string>

namespace varps::serve {

// The addresses of a TCP connection, as cpp-httplib writes them into a
// request (numeric host, port).
struct ConnectionAddresses {
  std::string local_addr;
  int local_port = -1;
  std::string remote_addr;
  int remote_port = -1;
};

// The descriptor of this process's connected TCP socket with these
// addresses, or -1 when none has them (or more than one).
int find_connection_socket(const ConnectionAddresses& c);

// Whether the peer of a connected socket has closed it or reset it (a FIN
// counts, so a client that shuts its sending side down after its request
// counts as gone). Waits for nothing.
bool peer_has_gone(int fd);

}  // namespace varps::serve
