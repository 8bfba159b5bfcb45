// Interrupt entry stubs, the thread context switch and the first-entry trampoline.
//
// Every stub pushes the same frame (see struct x86::InterruptFrame in cpu.h): a dummy error code
// where the CPU pushes none, the vector, then all fifteen general registers. The frame stays on
// the interrupted thread's stack, so the handler may call kernel::on_timer, which may
// context_switch to another thread; the interrupted thread later resumes inside the handler and
// returns through this stub's iretq.

#define STUBS_COUNT 48   /* 32 exceptions + 16 legacy PIC lines (vectors 0x20-0x2f) */

    .text
    .code64

.macro STUB vector
    .balign 16
isr_stub_\vector:
    // Vectors with a CPU-pushed error code: 8, 10-14, 17, 21, 29, 30.
    .if (\vector == 8) || ((\vector >= 10) && (\vector <= 14)) || (\vector == 17) || (\vector == 21) || (\vector == 29) || (\vector == 30)
    .else
    pushq $0
    .endif
    pushq $\vector
    jmp isr_common
.endm

.altmacro
.macro STUB_AT n
    STUB %n
.endm
.set i, 0
.rept STUBS_COUNT
    STUB_AT %i
    .set i, i + 1
.endr

isr_common:
    pushq %rax
    pushq %rbx
    pushq %rcx
    pushq %rdx
    pushq %rsi
    pushq %rdi
    pushq %rbp
    pushq %r8
    pushq %r9
    pushq %r10
    pushq %r11
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    cld
    movq %rsp, %rdi                // the frame; 16-byte aligned (the CPU aligned rsp first)
    call x86_interrupt_dispatch
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %r11
    popq %r10
    popq %r9
    popq %r8
    popq %rbp
    popq %rdi
    popq %rsi
    popq %rdx
    popq %rcx
    popq %rbx
    popq %rax
    addq $16, %rsp                 // vector and error code
    iretq

// The stubs' addresses, for building the IDT (cpu.cc).
.macro STUB_ADDRESS n
    .quad isr_stub_\n
.endm
    .section .rodata
    .balign 8
    .global x86_isr_stubs
x86_isr_stubs:
.set i, 0
.rept STUBS_COUNT
    STUB_ADDRESS %i
    .set i, i + 1
.endr
.noaltmacro

    .text
// void arch::context_switch(Context* from /* rdi */, Context* to /* rsi */)
// Saves the callee-saved registers on the current stack, stores rsp in from->rsp, loads
// to->rsp and pops the same layout. The caller-saved registers need no saving: the C++ caller
// already assumes this call clobbers them. rflags needs none either: every switch happens with
// interrupts disabled (arch.h) and the direction flag clear (the ABI), so both threads' rflags
// are the same at this point; a new thread turns interrupts on in the trampoline.
    .global _ZN4arch14context_switchEPNS_7ContextES1_
_ZN4arch14context_switchEPNS_7ContextES1_:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq (%rsi), %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret

// A new thread's first context_switch returns here (context_init placed entry in r13 and its
// argument in r12). Interrupts come on only now, on the new thread's own stack.
    .global x86_thread_trampoline
x86_thread_trampoline:
    movq %r12, %rdi
    sti
    call *%r13
    ud2                            // entry must never return (arch.h)

    .section .note.GNU-stack, "", @progbits
