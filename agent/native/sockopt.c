// The few socket options Node.js has no API for, as a Node-API addon (ABI-stable across Node
// versions, so it is built once per architecture):
//   originalDst(fd)  -> [address, port]   SO_ORIGINAL_DST / IP6T_SO_ORIGINAL_DST: where a TCP
//                                         connection was going before nftables redirected it
//   setMark(fd, mark)                     SO_MARK: lets the agent's own packets bypass capture
//   markedSocket(family, mark) -> fd      a fresh non-blocking TCP socket with SO_MARK already set,
//                                         so that even its SYN carries the mark (Node creates the
//                                         socket inside connect(): too late for setMark)
//   trimHeap() -> boolean                 malloc_trim(0): hands the C heap's free pages back to
//                                         the kernel (glibc keeps them after a burst of traffic;
//                                         false where the C library has no malloc_trim)
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <linux/netfilter_ipv4.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <node_api.h>

#ifndef IP6T_SO_ORIGINAL_DST
#define IP6T_SO_ORIGINAL_DST 80
#endif

static napi_value throw_errno(napi_env env, const char *what) {
  char msg[128];
  snprintf(msg, sizeof msg, "%s: %s", what, strerror(errno));
  napi_throw_error(env, errno == ENOENT ? "ENOENT" : "ESOCKOPT", msg);
  return NULL;
}

static int arg_int(napi_env env, napi_callback_info info, size_t want, int32_t *out) {
  size_t argc = 2;
  napi_value argv[2];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < want) return -1;
  for (size_t i = 0; i < want; i++)
    if (napi_get_value_int32(env, argv[i], &out[i]) != napi_ok) return -1;
  return 0;
}

static napi_value original_dst(napi_env env, napi_callback_info info) {
  int32_t fd;
  if (arg_int(env, info, 1, &fd) != 0) {
    napi_throw_type_error(env, "EINVAL", "originalDst(fd: number)");
    return NULL;
  }
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  memset(&ss, 0, sizeof ss);
  char text[INET6_ADDRSTRLEN];
  int port;
  if (getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &ss, &len) == 0) {
    struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
    inet_ntop(AF_INET, &sin->sin_addr, text, sizeof text);
    port = ntohs(sin->sin_port);
  } else {
    len = sizeof ss;
    if (getsockopt(fd, SOL_IPV6, IP6T_SO_ORIGINAL_DST, &ss, &len) != 0) return throw_errno(env, "SO_ORIGINAL_DST");
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
    inet_ntop(AF_INET6, &sin6->sin6_addr, text, sizeof text);
    port = ntohs(sin6->sin6_port);
  }
  napi_value result, addr, p;
  napi_create_array_with_length(env, 2, &result);
  napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &addr);
  napi_create_int32(env, port, &p);
  napi_set_element(env, result, 0, addr);
  napi_set_element(env, result, 1, p);
  return result;
}

static napi_value set_mark(napi_env env, napi_callback_info info) {
  int32_t a[2];
  if (arg_int(env, info, 2, a) != 0) {
    napi_throw_type_error(env, "EINVAL", "setMark(fd: number, mark: number)");
    return NULL;
  }
  uint32_t mark = (uint32_t)a[1];
  if (setsockopt(a[0], SOL_SOCKET, SO_MARK, &mark, sizeof mark) != 0) return throw_errno(env, "SO_MARK");
  return NULL;
}

static napi_value marked_socket(napi_env env, napi_callback_info info) {
  int32_t a[2];
  if (arg_int(env, info, 2, a) != 0 || (a[0] != 4 && a[0] != 6)) {
    napi_throw_type_error(env, "EINVAL", "markedSocket(family: 4 | 6, mark: number)");
    return NULL;
  }
  int fd = socket(a[0] == 4 ? AF_INET : AF_INET6, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return throw_errno(env, "socket");
  uint32_t mark = (uint32_t)a[1];
  if (setsockopt(fd, SOL_SOCKET, SO_MARK, &mark, sizeof mark) != 0) {
    int saved = errno;
    close(fd);
    errno = saved;
    return throw_errno(env, "SO_MARK");
  }
  napi_value out;
  napi_create_int32(env, fd, &out);
  return out;
}

static napi_value trim_heap(napi_env env, napi_callback_info info) {
  (void)info;
  int released = 0;
#ifdef __GLIBC__
  released = malloc_trim(0);
#endif
  napi_value out;
  napi_get_boolean(env, released != 0, &out);
  return out;
}

NAPI_MODULE_INIT() {
  napi_value fn;
  napi_create_function(env, "originalDst", NAPI_AUTO_LENGTH, original_dst, NULL, &fn);
  napi_set_named_property(env, exports, "originalDst", fn);
  napi_create_function(env, "setMark", NAPI_AUTO_LENGTH, set_mark, NULL, &fn);
  napi_set_named_property(env, exports, "setMark", fn);
  napi_create_function(env, "markedSocket", NAPI_AUTO_LENGTH, marked_socket, NULL, &fn);
  napi_set_named_property(env, exports, "markedSocket", fn);
  napi_create_function(env, "trimHeap", NAPI_AUTO_LENGTH, trim_heap, NULL, &fn);
  napi_set_named_property(env, exports, "trimHeap", fn);
  return exports;
}
