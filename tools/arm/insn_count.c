/*
 * insn_count: a QEMU TCG plugin that counts the guest instructions executed, for
 * `make bench-arm` (tools/bench_arm.py).
 *
 * Every translated block adds its instruction count to one counter when it runs (an inline
 * add, no call into the plugin). The guest marks the points it wants measured with a syscall
 * number no kernel has (MARK_SYSCALL, first argument: the mark's id); qemu-user answers it
 * with ENOSYS, and the plugin prints the counter there:
 *
 *     insn-mark <id> <instructions so far>
 *     insn-total <instructions>            (at exit)
 *
 * Printed with qemu_plugin_outs, so run qemu with `-d plugin -D FILE`. One counter for all
 * threads, not atomic: right for a guest that runs one thread.
 *
 * With the argument `threads=on` (`-plugin libinsn_count.so,threads=on`) each guest thread (a
 * vCPU in qemu-user) counts on its own, through a call per block instead of the inline add
 * (slower, but no thread adds to another's counter), and every mark also prints them:
 *
 *     insn-threads <id> <thread 0> <thread 1> ...
 *
 * so the bench can tell the work on the critical path (the busiest thread) from the sum.
 * In that mode a block that holds a spin-wait hint (aarch64 `yield`, x86 `pause`) is not
 * counted: a thread waiting for the others spins for as long as the emulated others take,
 * which says how slow the emulation is, not how much work there is. The totals then leave it
 * out too.
 *
 * Written against QEMU's plugin API version 1 (QEMU 7.2, Debian bookworm); Debian ships no
 * qemu-plugin.h, so the few declarations used are below. Build:
 *     cc -O2 -shared -fPIC -o libinsn_count.so insn_count.c
 */
#include <inttypes.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define EXPORT __attribute__((visibility("default")))
#define MARK_SYSCALL 0x7e57

typedef uint64_t qemu_plugin_id_t;
typedef struct qemu_info_t qemu_info_t;
struct qemu_plugin_tb;
struct qemu_plugin_insn;
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };

typedef void (*tb_trans_cb)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
typedef void (*syscall_cb)(qemu_plugin_id_t id, unsigned int vcpu, int64_t num, uint64_t a1,
                           uint64_t a2, uint64_t a3, uint64_t a4, uint64_t a5, uint64_t a6,
                           uint64_t a7, uint64_t a8);
typedef void (*udata_cb)(qemu_plugin_id_t id, void *userdata);
typedef void (*vcpu_udata_cb)(unsigned int vcpu_index, void *userdata);
enum qemu_plugin_cb_flags { QEMU_PLUGIN_CB_NO_REGS };

void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, tb_trans_cb cb);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *tb, size_t idx);
const void *qemu_plugin_insn_data(const struct qemu_plugin_insn *insn);
size_t qemu_plugin_insn_size(const struct qemu_plugin_insn *insn);
void qemu_plugin_register_vcpu_tb_exec_inline(struct qemu_plugin_tb *tb, enum qemu_plugin_op op,
                                              void *ptr, uint64_t imm);
void qemu_plugin_register_vcpu_tb_exec_cb(struct qemu_plugin_tb *tb, vcpu_udata_cb cb,
                                          enum qemu_plugin_cb_flags flags, void *userdata);
void qemu_plugin_register_vcpu_syscall_cb(qemu_plugin_id_t id, syscall_cb cb);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, udata_cb cb, void *userdata);
void qemu_plugin_outs(const char *string);

EXPORT int qemu_plugin_version = 1;

#define MAX_THREADS 64

static uint64_t insns;
static int per_thread;
/* Each slot written only by its own vCPU's thread; qemu-user may give a new thread the index
 * of one that ended, so a slot can serve several threads one after another (summed). */
static uint64_t thread_insns[MAX_THREADS];
static uint64_t other_threads; /* vCPUs past MAX_THREADS, shared: not exact */

static void on_block(unsigned int vcpu, void *userdata)
{
    uint64_t n = (uint64_t)(uintptr_t)userdata;
    if (vcpu < MAX_THREADS)
        thread_insns[vcpu] += n;
    else
        other_threads += n;
}

static uint64_t total(void)
{
    uint64_t sum = other_threads;

    if (!per_thread)
        return insns;
    for (int i = 0; i < MAX_THREADS; i++)
        sum += thread_insns[i];
    return sum;
}

/* A spin-wait hint: aarch64 YIELD (0xd503203f) or x86 PAUSE (f3 90). */
static int spins(const struct qemu_plugin_tb *tb, size_t n)
{
    static const unsigned char yield[] = {0x3f, 0x20, 0x03, 0xd5}, pause[] = {0xf3, 0x90};
    for (size_t i = 0; i < n; i++) {
        const struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        size_t size = qemu_plugin_insn_size(insn);
        const void *data = qemu_plugin_insn_data(insn);
        if ((size == sizeof yield && memcmp(data, yield, size) == 0) ||
            (size == sizeof pause && memcmp(data, pause, size) == 0))
            return 1;
    }
    return 0;
}

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    size_t n = qemu_plugin_tb_n_insns(tb);
    (void)id;
    if (!per_thread)
        qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &insns, n);
    else if (!spins(tb, n))
        qemu_plugin_register_vcpu_tb_exec_cb(tb, on_block, QEMU_PLUGIN_CB_NO_REGS,
                                             (void *)(uintptr_t)n);
}

static void print_threads(uint64_t id)
{
    char line[36 + 21 * MAX_THREADS]; /* "insn-threads", a 20-digit id, 64 counts, "\n" */
    int used = MAX_THREADS, at;
    while (used > 1 && thread_insns[used - 1] == 0)
        used--;
    at = snprintf(line, sizeof line, "insn-threads %" PRIu64, id);
    for (int i = 0; i < used; i++)
        at += snprintf(line + at, sizeof line - at, " %" PRIu64, thread_insns[i]);
    snprintf(line + at, sizeof line - at, "\n");
    qemu_plugin_outs(line);
}

static void on_syscall(qemu_plugin_id_t id, unsigned int vcpu, int64_t num, uint64_t a1,
                       uint64_t a2, uint64_t a3, uint64_t a4, uint64_t a5, uint64_t a6,
                       uint64_t a7, uint64_t a8)
{
    char line[64];
    (void)id, (void)vcpu, (void)a2, (void)a3, (void)a4, (void)a5, (void)a6, (void)a7, (void)a8;
    if (num != MARK_SYSCALL)
        return;
    snprintf(line, sizeof line, "insn-mark %" PRIu64 " %" PRIu64 "\n", a1, total());
    qemu_plugin_outs(line);
    if (per_thread)
        print_threads(a1);
}

static void on_exit(qemu_plugin_id_t id, void *userdata)
{
    char line[64];
    (void)id, (void)userdata;
    snprintf(line, sizeof line, "insn-total %" PRIu64 "\n", total());
    qemu_plugin_outs(line);
}

EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc,
                               char **argv)
{
    (void)info;
    for (int i = 0; i < argc; i++)
        if (strcmp(argv[i], "threads=on") == 0)
            per_thread = 1;
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
    qemu_plugin_register_vcpu_syscall_cb(id, on_syscall);
    qemu_plugin_register_atexit_cb(id, on_exit, NULL);
    return 0;
}
