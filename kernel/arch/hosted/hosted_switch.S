// Context switch for the hosted port (x86_64 System V): the callee-saved registers go on the
// old stack, the stack pointer into *save_sp; the new stack's registers are popped and `ret`
// resumes it. A new context's stack is prepared by arch::context_init so that `ret` lands in
// hosted_trampoline with r12 = its arch::Context*.

    .text
    .globl hosted_switch
    .type hosted_switch, @function
// void hosted_switch(void** save_sp, void* new_sp)
hosted_switch:
    .cfi_startproc
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .cfi_endproc
    .size hosted_switch, .-hosted_switch

    .globl hosted_trampoline
    .type hosted_trampoline, @function
hosted_trampoline:
    .cfi_startproc
    .cfi_undefined rip
    movq %r12, %rdi
    call hosted_thread_start
    ud2
    .cfi_endproc
    .size hosted_trampoline, .-hosted_trampoline

    .section .note.GNU-stack, "", @progbits
