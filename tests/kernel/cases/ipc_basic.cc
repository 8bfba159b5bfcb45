// send / receive / reply, multi-part messages, truncation and read.
#include "helpers.h"

using namespace kt;

namespace {
struct Fixture {
    Channel* ch = nullptr;
    Connection* conn = nullptr;
    bool ok() const { return ch && conn; }
    Fixture() {
        auto c = channel_create();
        if (c.is_ok()) ch = c.value;
        if (ch) {
            auto k = connect(ch);
            if (k.is_ok()) conn = k.value;
        }
    }
    ~Fixture() {
        if (conn) (void)disconnect(conn);
        if (ch) (void)channel_destroy(ch);
    }
};
}  // namespace

KTEST(ipc_send_receive_reply) {
    Fixture f;
    KREQUIRE(f.ok());
    SendJob job{f.conn, 0x1122334455667788ull};
    Thread* t = start_sender(&job, kPriorityDefault + 1);  // runs at once and blocks
    KREQUIRE(t);
    KCHECK_EQ(channel_stats(f.ch).queued, 1u);
    uint64_t got = 0;
    MutPart in{&got, sizeof(got)};
    ReceiveInfo info{};
    KCHECK_OK(receive(f.ch, one(in), kNoDeadline, &info));
    KCHECK(info.kind == ReceiveKind::kMessage);
    KCHECK(info.id != 0);
    KCHECK_EQ(info.size, 8u);
    KCHECK_EQ(info.copied, 8u);
    KCHECK_EQ(info.reply_capacity, 8u);
    KCHECK_EQ(info.priority, kPriorityDefault + 1);
    KCHECK_EQ(info.sender.node, 0u);
    KCHECK_EQ(info.sender.thread, thread_id(t));
    KCHECK_EQ(got, 0x1122334455667788ull);
    uint64_t answer = got + 1;
    Part out{&answer, sizeof(answer)};
    KCHECK_OK(reply(info.id, 77, one(out)));
    KCHECK_STATUS(reply(info.id, 0, one(out)), Status::kBadReceiveId);  // only once
    KCHECK_OK(thread_join(t).status);
    KCHECK_OK(job.result.status);
    KCHECK_EQ(job.result.value, 8u);
    KCHECK_EQ(job.reply, 0x1122334455667789ull);
    KCHECK_EQ(job.reply_code, 77);
}

KTEST(ipc_receiver_waiting_first_gets_message_directly) {
    Fixture f;
    KREQUIRE(f.ok());
    struct Server {
        Channel* ch;
        uint64_t got = 0;
        Status status = Status::kWouldBlock;
    } server{f.ch};
    auto t = thread_create("server", [](void* arg) {
        auto* s = static_cast<Server*>(arg);
        MutPart in{&s->got, sizeof(s->got)};
        ReceiveInfo info{};
        s->status = receive(s->ch, one(in), kNoDeadline, &info);
        uint64_t answer = s->got * 2;
        Part out{&answer, sizeof(answer)};
        if (s->status == Status::kOk) s->status = reply(info.id, 0, one(out));
    }, &server, kPriorityDefault + 1);
    KREQUIRE(t.is_ok());
    KCHECK_EQ(channel_stats(f.ch).receivers_waiting, 1u);
    uint64_t v = 21, r = 0;
    Part out{&v, sizeof(v)};
    MutPart in{&r, sizeof(r)};
    auto res = send(f.conn, one(out), one(in), kNoDeadline);
    KCHECK_OK(res.status);
    KCHECK_EQ(r, 42u);
    KCHECK_OK(thread_join(t.value).status);
    KCHECK_OK(server.status);
    KCHECK_EQ(channel_stats(f.ch).receivers_waiting, 0u);
}

namespace {
struct MultiServer {
    Channel* ch;
    char a[5] = {};
    char b[64] = {};
    ReceiveInfo info{};
    Status status = Status::kWouldBlock;
};
void multi_server(void* arg) {
    auto* s = static_cast<MultiServer*>(arg);
    MutPart in[2] = {{s->a, 5}, {s->b, sizeof(s->b)}};
    s->status = receive(s->ch, MutParts{in, 2}, kNoDeadline, &s->info);
    if (s->status != Status::kOk) return;
    const char* x = "re";
    const char* y = "ply!";
    Part out[2] = {{x, 2}, {y, 4}};
    s->status = reply(s->info.id, 0, Parts{out, 2});
}
}  // namespace

KTEST(ipc_multi_part_scatter_gather) {
    Fixture f;
    KREQUIRE(f.ok());
    MultiServer s{f.ch};
    auto t = thread_create("server", multi_server, &s, kPriorityDefault + 1);
    KREQUIRE(t.is_ok());
    const char* p1 = "hel";
    const char* p2 = "";
    const char* p3 = "lo, world";
    Part out[3] = {{p1, 3}, {p2, 0}, {p3, 9}};
    char r1[3] = {}, r2[10] = {};
    MutPart in[2] = {{r1, 3}, {r2, 10}};
    auto res = send(f.conn, Parts{out, 3}, MutParts{in, 2}, kNoDeadline);
    KCHECK_OK(thread_join(t.value).status);
    KCHECK_OK(s.status);
    KCHECK_OK(res.status);
    KCHECK_EQ(res.value, 6u);
    KCHECK_EQ(s.info.size, 12u);
    KCHECK_EQ(s.info.copied, 12u);
    KCHECK_EQ(s.info.reply_capacity, 13u);
    KCHECK(__builtin_memcmp(s.a, "hello", 5) == 0);
    KCHECK(__builtin_memcmp(s.b, ", world", 7) == 0);
    KCHECK(__builtin_memcmp(r1, "rep", 3) == 0);
    KCHECK(__builtin_memcmp(r2, "ly!", 3) == 0);
}

namespace {
struct TruncServer {
    Channel* ch;
    char head[10] = {};
    char rest[200] = {};
    char mid[2][3] = {};
    ReceiveInfo info{};
    Result<size_t> r1 = Result<size_t>::error(Status::kWouldBlock);
    Result<size_t> r2 = Result<size_t>::error(Status::kWouldBlock);
    Result<size_t> r3 = Result<size_t>::error(Status::kWouldBlock);
    Status rs = Status::kWouldBlock;
};
void trunc_server(void* arg) {
    auto* s = static_cast<TruncServer*>(arg);
    MutPart in{s->head, sizeof(s->head)};
    if (receive(s->ch, one(in), kNoDeadline, &s->info) != Status::kOk) return;
    MutPart rest{s->rest, sizeof(s->rest)};
    s->r1 = read(s->info.id, 10, one(rest), kNoDeadline);
    MutPart mid[2] = {{s->mid[0], 3}, {s->mid[1], 3}};
    s->r2 = read(s->info.id, 48, MutParts{mid, 2}, kNoDeadline);  // spans the sender's parts
    s->r3 = read(s->info.id, 100, one(rest), kNoDeadline);         // at the end: 0 bytes
    char big[40];
    for (int i = 0; i < 40; ++i) big[i] = static_cast<char>('A' + i % 26);
    Part out{big, sizeof(big)};
    s->rs = reply(s->info.id, 0, one(out));
}
}  // namespace

KTEST(ipc_truncation_and_read) {
    Fixture f;
    KREQUIRE(f.ok());
    TruncServer s{f.ch};
    auto t = thread_create("server", trunc_server, &s, kPriorityDefault + 1);
    KREQUIRE(t.is_ok());
    char msg_a[50], msg_b[50];
    for (int i = 0; i < 50; ++i) msg_a[i] = static_cast<char>(i), msg_b[i] = static_cast<char>(50 + i);
    Part out[2] = {{msg_a, 50}, {msg_b, 50}};
    char small[16] = {};
    MutPart in{small, sizeof(small)};
    auto res = send(f.conn, Parts{out, 2}, one(in), kNoDeadline);
    KCHECK_OK(thread_join(t.value).status);
    KCHECK_EQ(s.info.size, 100u);
    KCHECK_EQ(s.info.copied, 10u);
    KCHECK_OK(s.r1.status);
    KCHECK_EQ(s.r1.value, 90u);
    bool same = true;
    for (int i = 0; i < 10; ++i) same = same && s.head[i] == static_cast<char>(i);
    for (int i = 0; i < 90; ++i) same = same && s.rest[i] == static_cast<char>(10 + i);
    KCHECK(same);
    KCHECK_OK(s.r2.status);
    KCHECK_EQ(s.r2.value, 6u);
    KCHECK_EQ(s.mid[0][2], 50);  // byte 50 is the first of the second part
    KCHECK_EQ(s.mid[1][2], 53);
    KCHECK_OK(s.r3.status);
    KCHECK_EQ(s.r3.value, 0u);
    KCHECK_OK(s.rs);
    // The reply is truncated to the sender's buffer, and send reports its full size.
    KCHECK_OK(res.status);
    KCHECK_EQ(res.value, 40u);
    KCHECK_EQ(small[0], 'A');
    KCHECK_EQ(small[15], 'P');
}
