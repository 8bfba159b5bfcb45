// An intrusive, circular, doubly linked list. Objects carry their own ListNode, so linking never
// allocates (the IPC send path depends on that). Kernel state is touched with interrupts disabled,
// so the list needs no locking of its own.
#pragma once

#include <stddef.h>

namespace kernel {

struct ListNode {
    ListNode* prev = nullptr;
    ListNode* next = nullptr;

    bool linked() const { return next != nullptr; }
};

class List {
public:
    // Constant initialisation would leave head pointing nowhere: call init() before use.
    void init() { head_.prev = head_.next = &head_; }
    bool empty() const { return head_.next == &head_; }
    ListNode* front() const { return empty() ? nullptr : head_.next; }
    ListNode* back() const { return empty() ? nullptr : head_.prev; }
    // The node after n, or nullptr at the end.
    ListNode* next(const ListNode* n) const { return n->next == &head_ ? nullptr : n->next; }
    ListNode* prev(const ListNode* n) const { return n->prev == &head_ ? nullptr : n->prev; }

    void push_back(ListNode* n) { insert_before(&head_, n); }
    void push_front(ListNode* n) { insert_before(head_.next, n); }
    // Inserts n after pos (pos nullptr: at the front).
    void insert_after(ListNode* pos, ListNode* n) { insert_before(pos ? pos->next : head_.next, n); }
    ListNode* pop_front() {
        ListNode* n = front();
        if (n) remove(n);
        return n;
    }
    static void remove(ListNode* n) {
        n->prev->next = n->next;
        n->next->prev = n->prev;
        n->prev = n->next = nullptr;
    }
    // Moves every node of `from` to the back of this list, in order, in constant time.
    void splice_back(List& from) {
        if (from.empty()) return;
        ListNode* first = from.head_.next;
        ListNode* last = from.head_.prev;
        first->prev = head_.prev;
        head_.prev->next = first;
        last->next = &head_;
        head_.prev = last;
        from.init();
    }
    size_t size() const {
        size_t count = 0;
        for (const ListNode* n = head_.next; n != &head_; n = n->next) ++count;
        return count;
    }

private:
    static void insert_before(ListNode* pos, ListNode* n) {
        n->next = pos;
        n->prev = pos->prev;
        pos->prev->next = n;
        pos->prev = n;
    }
    ListNode head_;
};

// The object that holds `node` as its member `member` (types used with it are standard layout).
#define KERNEL_CONTAINER_OF(node, Type, member) \
    (reinterpret_cast<Type*>(reinterpret_cast<char*>(node) - offsetof(Type, member)))

}  // namespace kernel
