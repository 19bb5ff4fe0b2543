#ifndef SSE_HUB_CLINUX_SHIM_H
#define SSE_HUB_CLINUX_SHIM_H
// Linux interfaces the Glibc module does not bring into Swift.
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <malloc.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/capability.h>

// Declared by <sys/socket.h> only under _GNU_SOURCE, which a module header cannot rely on.
extern int accept4(int fd, struct sockaddr *addr, socklen_t *addrlen, int flags);
// Declared by <unistd.h> only under _GNU_SOURCE, likewise.
extern int pipe2(int pipefd[2], int flags);

#include <spawn.h>
// glibc 2.34+, declared by <spawn.h> only under __USE_MISC.
extern int posix_spawn_file_actions_addclosefrom_np(posix_spawn_file_actions_t *actions, int from);

// prctl(2) is variadic, and variadic C functions do not import into Swift.
static inline int clinux_set_parent_death_signal(int signal) {
    return prctl(PR_SET_PDEATHSIG, (unsigned long)signal, 0UL, 0UL, 0UL);
}

// prctl(PR_SET_NO_NEW_PRIVS): execve can never grant privileges again (setuid bits, file capabilities).
static inline int clinux_set_no_new_privileges(void) {
    return prctl(PR_SET_NO_NEW_PRIVS, 1UL, 0UL, 0UL, 0UL);
}

// capget(2) has no glibc wrapper (libcap has one); the effective and permitted sets, all 64 bits.
static inline int clinux_capabilities(unsigned long long *effective, unsigned long long *permitted) {
    struct __user_cap_header_struct header = { _LINUX_CAPABILITY_VERSION_3, 0 };
    struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];
    if (syscall(SYS_capget, &header, data) != 0) return -1;
    *effective = (unsigned long long)data[0].effective | ((unsigned long long)data[1].effective << 32);
    *permitted = (unsigned long long)data[0].permitted | ((unsigned long long)data[1].permitted << 32);
    return 0;
}
#endif
