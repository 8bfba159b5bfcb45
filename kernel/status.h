// The kernel's one error enum, shared by threads, IPC and (later) the remote bridge, so that a
// remote send reports its outcomes through the same call as a local one.
#pragma once

#include <stddef.h>
#include <stdint.h>

namespace kernel {

enum class Status : int32_t {
    kOk = 0,
    // ---- Local outcomes ----
    kTimedOut = 1,           // the call's deadline passed before it could complete
    kNoMemory = 2,           // the kernel heap could not satisfy an allocation (nothing changed)
    kLimitReached = 3,       // a named table limit (threads, records, parts...) is full
    kInvalidArgument = 4,    // null object, too many parts, bad priority, reserved pulse code...
    kBadReceiveId = 5,       // reply/error/read with a receive id that is unknown or already used
    kSenderUnblocked = 6,    // reply/error/read to a sender whose deadline passed after receive:
                             // it already returned kTimedOut and the server got an unblock pulse
    kChannelDestroyed = 7,   // the channel was destroyed (before or while the caller waited)
    kServerExited = 8,       // the thread holding the message exited without replying
    kNotSupported = 9,       // e.g. a remote connection while no bridge is registered
    kWouldBlock = 10,        // a non-blocking attempt (deadline 0) found nothing to do
    kMessageError = 11,      // default code of error(rcvid) when the server gives none
    // ---- Remote outcomes (issue 8: reported by the bridge through the same calls) ----
    kHostDown = 20,          // the peer node stopped answering within the liveness bound
    kPeerRebooted = 21,      // the peer answered with a new incarnation: old transactions are gone
    kNoSuchService = 22,     // the name or channel does not exist on the peer
    kMessageTooLarge = 23,   // larger than kMessageBytesMax or than the peer accepts
    kNoSuchNode = 24,        // name_open("NODE/..."): NODE is not in the static peer table
};

// A short constant name for logs and test output ("timed-out", ...).
const char* status_name(Status status);

// A value or an error, with no exceptions (kernel code has none).
template <typename T>
struct Result {
    Status status;
    T value;

    static Result ok(T v) { return Result{Status::kOk, v}; }
    static Result error(Status s) { return Result{s, T{}}; }
    bool is_ok() const { return status == Status::kOk; }
};

}  // namespace kernel
