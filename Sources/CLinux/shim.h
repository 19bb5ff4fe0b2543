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
// Declared by <sys/mman.h> only under _GNU_SOURCE, likewise (glibc 2.27+).
extern int memfd_create(const char *name, unsigned int flags);
#define CLINUX_MFD_CLOEXEC 0x0001U

#include <spawn.h>
// glibc 2.34+, declared by <spawn.h> only under __USE_MISC.
extern int posix_spawn_file_actions_addclosefrom_np(posix_spawn_file_actions_t *actions, int from);

#include <signal.h>
#include <string.h>
#include <errno.h>
#include <sys/wait.h>

// SIGCHLD as an event: the handler writes a byte to a non-blocking pipe that the supervisor's event loop reads
// (a full pipe already holds a byte to read, so a lost write loses nothing). Written in C because a signal handler
// may only touch async-signal-safe state.
static int clinux_child_exit_pipe = -1;

static void clinux_on_child_exit(int signal) {
    (void)signal;
    int saved = errno;
    char byte = 1;
    if (clinux_child_exit_pipe >= 0) (void)write(clinux_child_exit_pipe, &byte, 1);
    errno = saved;
}

// SA_NOCLDSTOP: a child stopped (SIGSTOP) has not exited; SA_RESTART: other threads' blocking calls carry on.
static inline int clinux_install_child_exit_pipe(int pipe_write_end) {
    clinux_child_exit_pipe = pipe_write_end;
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = clinux_on_child_exit;
    action.sa_flags = SA_RESTART | SA_NOCLDSTOP;
    sigemptyset(&action.sa_mask);
    return sigaction(SIGCHLD, &action, NULL);
}

// prctl(2) is variadic, and variadic C functions do not import into Swift.
static inline int clinux_set_thread_name(const char *name) {
    return prctl(PR_SET_NAME, (unsigned long)name, 0UL, 0UL, 0UL);
}

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
