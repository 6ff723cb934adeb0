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
 * threads, not atomic: the bench runs the guest single-threaded.
 *
 * Written against QEMU's plugin API version 1 (QEMU 7.2, Debian bookworm); Debian ships no
 * qemu-plugin.h, so the few declarations used are below. Build:
 *     cc -O2 -shared -fPIC -o libinsn_count.so insn_count.c
 */
#include <inttypes.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define EXPORT __attribute__((visibility("default")))
#define MARK_SYSCALL 0x7e57

typedef uint64_t qemu_plugin_id_t;
typedef struct qemu_info_t qemu_info_t;
struct qemu_plugin_tb;
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };

typedef void (*tb_trans_cb)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
typedef void (*syscall_cb)(qemu_plugin_id_t id, unsigned int vcpu, int64_t num, uint64_t a1,
                           uint64_t a2, uint64_t a3, uint64_t a4, uint64_t a5, uint64_t a6,
                           uint64_t a7, uint64_t a8);
typedef void (*udata_cb)(qemu_plugin_id_t id, void *userdata);

void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, tb_trans_cb cb);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
void qemu_plugin_register_vcpu_tb_exec_inline(struct qemu_plugin_tb *tb, enum qemu_plugin_op op,
                                              void *ptr, uint64_t imm);
void qemu_plugin_register_vcpu_syscall_cb(qemu_plugin_id_t id, syscall_cb cb);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, udata_cb cb, void *userdata);
void qemu_plugin_outs(const char *string);

EXPORT int qemu_plugin_version = 1;

static uint64_t insns;

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    (void)id;
    qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &insns,
                                             qemu_plugin_tb_n_insns(tb));
}

static void on_syscall(qemu_plugin_id_t id, unsigned int vcpu, int64_t num, uint64_t a1,
                       uint64_t a2, uint64_t a3, uint64_t a4, uint64_t a5, uint64_t a6,
                       uint64_t a7, uint64_t a8)
{
    char line[64];
    (void)id, (void)vcpu, (void)a2, (void)a3, (void)a4, (void)a5, (void)a6, (void)a7, (void)a8;
    if (num != MARK_SYSCALL)
        return;
    snprintf(line, sizeof line, "insn-mark %" PRIu64 " %" PRIu64 "\n", a1, insns);
    qemu_plugin_outs(line);
}

static void on_exit(qemu_plugin_id_t id, void *userdata)
{
    char line[64];
    (void)id, (void)userdata;
    snprintf(line, sizeof line, "insn-total %" PRIu64 "\n", insns);
    qemu_plugin_outs(line);
}

EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc,
                               char **argv)
{
    (void)info, (void)argc, (void)argv;
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
    qemu_plugin_register_vcpu_syscall_cb(id, on_syscall);
    qemu_plugin_register_atexit_cb(id, on_exit, NULL);
    return 0;
}
