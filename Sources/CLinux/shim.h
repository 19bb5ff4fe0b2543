#ifndef SSE_HUB_CLINUX_SHIM_H
#define SSE_HUB_CLINUX_SHIM_H
// Linux interfaces the Glibc module does not bring into Swift.
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/socket.h>

// Declared by <sys/socket.h> only under _GNU_SOURCE, which a module header cannot rely on.
extern int accept4(int fd, struct sockaddr *addr, socklen_t *addrlen, int flags);

// prctl(2) is variadic, and variadic C functions do not import into Swift.
static inline int clinux_set_parent_death_signal(int signal) {
    return prctl(PR_SET_PDEATHSIG, (unsigned long)signal, 0UL, 0UL, 0UL);
}
#endif
