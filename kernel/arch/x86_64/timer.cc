// Time: the TSC, calibrated against the PIT at boot, gives arch::now_ns; PIT channel 0 in mode 0
// (interrupt on terminal count) is a one-shot timer, so the kernel is tickless: an idle node with
// no deadline takes no interrupts at all. The PIT counts at most 65536 ticks (~55 ms); a later
// deadline fires early, finds itself early and re-arms for the rest.
#include "arch.h"
#include "cpu.h"
#include "platform.h"

namespace x86 {
namespace {

constexpr uint64_t kPitHz = 1193182;
constexpr uint16_t kPitChannel0 = 0x40;
constexpr uint16_t kPitChannel2 = 0x42;
constexpr uint16_t kPitCommand = 0x43;
constexpr uint16_t kPitGatePort = 0x61;  // bit 0: channel 2 gate, bit 1: speaker, bit 5: OUT2
constexpr uint64_t kPitTicksMax = 65535;
constexpr uint64_t kCalibrationTicks = kPitHz / 100;  // 10 ms
constexpr uint64_t kNsPerSecond = 1000000000;
// Port reads while calibrating before giving up (each takes ~1 us under TCG, far more than 10 ms).
constexpr uint64_t kCalibrationPollsMax = 100000000;
// Tries before taking the best one seen: a try is spoilt when the vCPU is descheduled across
// the end of the count, which on a host running 8 times more vCPUs than it has cores is most of
// them; 200 tries (2 s at worst) make that all fail about never. An idle host needs one.
constexpr int kCalibrationTries = 200;
int calibration_tries = 0;
uint64_t calibration_slop_ppm = 0;  // the chosen try's uncertainty, parts per million

uint64_t tsc_at_boot = 0;
uint64_t ns_per_tsc_q32 = 0;  // nanoseconds per TSC tick, fixed point with 32 fraction bits

// The deadline the kernel asked for, and when the armed one-shot fires (if any). The one-shot
// may fire before `wanted` (a later deadline than the PIT can reach, or one replaced by a later
// one, which is not reprogrammed): the interrupt then re-arms.
uint64_t wanted_ns = arch::kNoDeadline;
uint64_t armed_ns = arch::kNoDeadline;

void program_one_shot(uint64_t deadline_ns, uint64_t now) {
    uint64_t delta_ns = deadline_ns > now ? deadline_ns - now : 0;
    const uint64_t reach_ns = kPitTicksMax * kNsPerSecond / kPitHz;
    if (delta_ns > reach_ns) delta_ns = reach_ns;
    uint64_t ticks = (delta_ns * kPitHz + kNsPerSecond - 1) / kNsPerSecond;  // round up: never early
    if (ticks == 0) ticks = 1;
    if (ticks > kPitTicksMax) ticks = kPitTicksMax;
    outb(kPitCommand, 0x30);  // channel 0, low then high byte, mode 0, binary
    outb(kPitChannel0, uint8_t(ticks));
    outb(kPitChannel0, uint8_t(ticks >> 8));
    // The deadline it serves, not the tick it fires on (up to a tick later, never earlier): a
    // thread that asks again for the same deadline must not reprogram (3 port writes, each an
    // exit into QEMU) because of the rounding.
    armed_ns = deadline_ns - now <= reach_ns ? deadline_ns : now + ticks * kNsPerSecond / kPitHz;
}

}  // namespace

void timer_init() {
    // Channel 2 counts kCalibrationTicks in mode 0 with its gate on and the speaker off; its OUT
    // pin (port 0x61 bit 5) rises at the end. The TSC ticks in between give its frequency. Under
    // a busy host the vCPU can be descheduled between the PIT's start and our TSC read, or
    // between its end and the poll that sees it (a node once calibrated 4.3 GHz on a 2.6 GHz
    // host, and its clock ran at 60%; 16 nodes booting at once, 1.5 to 9 GHz). So each try
    // brackets both instants between two TSC reads, the first try bracketed within 0.1% ends
    // the search, and otherwise the narrowest wins (its uncertainty is printed).
    outb(kPitGatePort, uint8_t((inb(kPitGatePort) & ~0x02) | 0x01));
    uint64_t best_ticks = 0, best_slop = ~uint64_t(0);
    int tries = 0;
    while (tries < kCalibrationTries) {
        ++tries;
        const uint64_t before = read_tsc();
        outb(kPitCommand, 0xb0);  // channel 2, low then high byte, mode 0, binary
        outb(kPitChannel2, uint8_t(kCalibrationTicks));
        outb(kPitChannel2, uint8_t(kCalibrationTicks >> 8));
        const uint64_t after = read_tsc();  // the count started in [before, after]
        // A read that sees OUT low proves the end came after the TSC read just before it; one
        // that sees it high, that the end came before the TSC read just after it. (The TSC read
        // after a low read proves nothing: the vCPU may have been descheduled in between, past
        // the end.)
        uint64_t last_low = after, high = 0;
        uint64_t polls = 0;
        while (true) {
            const uint64_t pre = read_tsc();
            const bool done = (inb(kPitGatePort) & 0x20) != 0;
            if (done) {
                high = read_tsc();  // it ended in [last_low, high]
                break;
            }
            last_low = pre;
            if (++polls == kCalibrationPollsMax) {
                serial_write("x86: the PIT's channel 2 never counted down: no time source\n");
                debug_exit(kExitValueFailure);
            }
        }
        const uint64_t slop = (after - before) + (high - last_low);
        const uint64_t ticks = (high + last_low) / 2 - (after + before) / 2;
        if (slop < best_slop) best_slop = slop, best_ticks = ticks;
        if (best_slop * 1000 < best_ticks) break;
    }
    calibration_tries = tries;
    calibration_slop_ppm = best_ticks ? best_slop * 1000000 / best_ticks : 0;
    uint64_t tsc_hz = best_ticks * kPitHz / kCalibrationTicks;
    if (tsc_hz == 0) tsc_hz = 1;
    ns_per_tsc_q32 = (kNsPerSecond << 32) / tsc_hz;
    tsc_at_boot = read_tsc();
    // The BIOS left channel 0 periodic (18.2 Hz): one last one-shot, ignored when it fires (no
    // deadline wanted), turns it into a quiet one-shot timer until the kernel asks for one.
    program_one_shot(arch::kNoDeadline - 1, 0);
    armed_ns = arch::kNoDeadline;
    serial_write("x86: TSC ");
    serial_write_decimal(tsc_hz / 1000);
    serial_write(" kHz (calibrated against the PIT: ");
    serial_write_decimal(calibration_tries);
    serial_write(" tries, uncertainty ");
    serial_write_decimal(calibration_slop_ppm);
    serial_write(" ppm)\n");
}

uint64_t timer_interrupts = 0;

void timer_interrupt() {
    ++timer_interrupts;
    armed_ns = arch::kNoDeadline;
    // Early (nothing wanted, or a later deadline than the one armed for): re-arm, then give the
    // kernel its preemption point. Like on_timer, it may switch: nothing may follow it.
    if (wanted_ns == arch::kNoDeadline) {
        kernel::on_timer_early();
        return;
    }
    uint64_t now = arch::now_ns();
    if (now < wanted_ns) {
        program_one_shot(wanted_ns, now);
        kernel::on_timer_early();
        return;
    }
    // The kernel sets its next deadline from inside on_timer, which may also switch threads and
    // return only much later: nothing may follow this call.
    wanted_ns = arch::kNoDeadline;
    kernel::on_timer(now);
}

}  // namespace x86

namespace arch {

uint64_t now_ns() {
    uint64_t ticks = x86::read_tsc() - x86::tsc_at_boot;
    return uint64_t((unsigned __int128)ticks * x86::ns_per_tsc_q32 >> 32);
}

uint64_t cycle_counter() { return x86::read_tsc(); }

bool timer_fires_by(uint64_t deadline_ns) { return x86::armed_ns <= deadline_ns; }

void set_timer_deadline(uint64_t deadline_ns) {
    x86::wanted_ns = deadline_ns;
    // An armed one-shot at or before the new deadline will re-arm when it fires; no deadline at
    // all lets the armed one fire once, find nothing wanted and stay quiet.
    if (deadline_ns == kNoDeadline || x86::armed_ns <= deadline_ns) return;
    x86::program_one_shot(deadline_ns, now_ns());
}

}  // namespace arch
