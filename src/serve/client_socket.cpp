#include "serve/client_socket.hpp"

#include <arpa/inet.h>
#include <dirent.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <cstdlib>

namespace varps::serve {

namespace {

// Numeric host and port of a socket address, as cpp-httplib gets them
// (getnameinfo with NI_NUMERICHOST).
bool numeric(const sockaddr_storage& a, socklen_t len, std::string& host, int& port) {
  char buf[NI_MAXHOST];
  if (getnameinfo(reinterpret_cast<const sockaddr*>(&a), len, buf, sizeof buf, nullptr, 0, NI_NUMERICHOST) != 0)
    return false;
  host = buf;
  if (a.ss_family == AF_INET) port = ntohs(reinterpret_cast<const sockaddr_in&>(a).sin_port);
  else if (a.ss_family == AF_INET6) port = ntohs(reinterpret_cast<const sockaddr_in6&>(a).sin6_port);
  else return false;
  return true;
}

bool has_addresses(int fd, const ConnectionAddresses& c) {
  sockaddr_storage a{};
  socklen_t len = sizeof a;
  std::string host;
  int port = -1;
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0 || !numeric(a, len, host, port) ||
      port != c.remote_port || host != c.remote_addr)
    return false;
  len = sizeof a;
  return getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0 && numeric(a, len, host, port) &&
         port == c.local_port && host == c.local_addr;
}

}  // namespace

int find_connection_socket(const ConnectionAddresses& c) {
  DIR* dir = opendir("/proc/self/fd");
  if (!dir) return -1;
  int found = -1, matches = 0;
  while (const dirent* e = readdir(dir)) {
    char* end = nullptr;
    const long fd = std::strtol(e->d_name, &end, 10);
    if (end == e->d_name || *end != '\0' || fd == dirfd(dir)) continue;
    if (has_addresses(static_cast<int>(fd), c)) {
      found = static_cast<int>(fd);
      ++matches;
    }
  }
  closedir(dir);
  return matches == 1 ? found : -1;
}

bool peer_has_gone(int fd) {
  pollfd p{fd, POLLRDHUP, 0};
  return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) != 0;
}

}  // namespace varps::serve
