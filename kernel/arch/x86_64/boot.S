// Entry from a multiboot1 loader (QEMU's -kernel): 32-bit protected mode, paging off, eax = the
// multiboot magic, ebx = the multiboot information. QEMU loads only 32-bit ELF files, so this
// stub is assembled into the 64-bit kernel and the linked kernel is converted with
// `objcopy -O elf32-i386`; the 64-bit code is just bytes to the loader.
//
// Steps: zero .bss, identity-map the first 4 GiB with 2 MiB pages (so PCI MMIO BARs below 4 GiB
// are reachable at their physical address) except page 0 (null pointers fault), enable PAE + long mode + paging, load a minimal
// 64-bit GDT, far-jump to 64-bit code, then call x86_boot_main(magic, info) on the boot stack.
// boot.cc replaces the GDT (adding the TSS) and builds the IDT.

#define MULTIBOOT_MAGIC 0x1BADB002
#define MULTIBOOT_FLAGS 0x00000003  /* bit 0: page-aligned modules, bit 1: memory map wanted */
#define PAGE_PRESENT_WRITABLE 0x003
#define PAGE_LARGE_2MIB 0x083       /* present, writable, page size = 2 MiB */
#define IDENTITY_GIB 4              /* page directories: one per GiB */
#define BOOT_STACK_BYTES 16384

    .section .multiboot, "a"
    .balign 4
    .long MULTIBOOT_MAGIC
    .long MULTIBOOT_FLAGS
    .long -(MULTIBOOT_MAGIC + MULTIBOOT_FLAGS)

    .section .boot.text, "ax"
    .code32
    .global _start
_start:
    cli
    cld
    movl %eax, boot_magic          // in .data: survives the .bss clearing below
    movl %ebx, boot_info

    movl $__bss_start, %edi
    movl $__bss_end, %ecx
    subl %edi, %ecx
    xorl %eax, %eax
    rep stosb
    movl $boot_stack_top, %esp

    // PML4[0] -> PDPT; PDPT[0..3] -> four page directories; each PD maps 1 GiB in 2 MiB pages.
    movl $boot_pdpt, %eax
    orl $PAGE_PRESENT_WRITABLE, %eax
    movl %eax, boot_pml4
    xorl %ecx, %ecx
1:  movl %ecx, %eax
    shll $12, %eax
    addl $boot_pd, %eax
    orl $PAGE_PRESENT_WRITABLE, %eax
    movl %eax, boot_pdpt(,%ecx,8)
    incl %ecx
    cmpl $IDENTITY_GIB, %ecx
    jne 1b

    xorl %ecx, %ecx                // entry index over all four directories (4 x 512 entries)
2:  movl %ecx, %eax
    shll $21, %eax                 // physical address: index x 2 MiB (wraps to 0 above 4 GiB:
    orl $PAGE_LARGE_2MIB, %eax     //  the high dword carries bits 32+, set below)
    movl %eax, boot_pd(,%ecx,8)
    movl %ecx, %eax
    shrl $11, %eax                 // bits 32+ of index x 2 MiB
    movl %eax, boot_pd+4(,%ecx,8)
    incl %ecx
    cmpl $(IDENTITY_GIB * 512), %ecx
    jne 2b

    // The first 2 MiB in 4 KiB pages instead, page 0 left out: a null pointer faults (#PF with
    // cr2 < 4096) instead of quietly reading the real-mode interrupt table.
    movl $1, %ecx
4:  movl %ecx, %eax
    shll $12, %eax
    orl $PAGE_PRESENT_WRITABLE, %eax
    movl %eax, boot_pt_low(,%ecx,8)
    incl %ecx
    cmpl $512, %ecx
    jne 4b
    movl $boot_pt_low, %eax
    orl $PAGE_PRESENT_WRITABLE, %eax
    movl %eax, boot_pd

    movl %cr4, %eax
    orl $(1 << 5), %eax            // PAE
    movl %eax, %cr4
    movl $boot_pml4, %eax
    movl %eax, %cr3
    movl $0xC0000080, %ecx         // EFER
    rdmsr
    orl $(1 << 8), %eax            // LME
    wrmsr
    movl %cr0, %eax
    orl $((1 << 31) | (1 << 16)), %eax  // PG, WP
    movl %eax, %cr0

    lgdt boot_gdt_pointer
    ljmp $0x08, $long_mode_entry

    .code64
long_mode_entry:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    xorw %ax, %ax
    movw %ax, %fs
    movw %ax, %gs
    movq $boot_stack_top, %rsp
    xorq %rbp, %rbp
    movl boot_magic(%rip), %edi
    movl boot_info(%rip), %esi
    call x86_boot_main             // never returns
3:  cli
    hlt
    jmp 3b

    .section .rodata
    .balign 8
boot_gdt:
    .quad 0
    .quad 0x00209A0000000000       // 0x08: 64-bit code, ring 0
    .quad 0x0000920000000000       // 0x10: data, ring 0
boot_gdt_end:
boot_gdt_pointer:
    .word boot_gdt_end - boot_gdt - 1
    .long boot_gdt

    .section .data
    .balign 4
boot_magic: .long 0
boot_info:  .long 0

    .section .bss
    .balign 4096
boot_pml4:  .skip 4096
boot_pdpt:  .skip 4096
boot_pd:    .skip 4096 * IDENTITY_GIB
boot_pt_low: .skip 4096
    .balign 16
    .global boot_stack_bottom
boot_stack_bottom:
    .skip BOOT_STACK_BYTES
    .global boot_stack_top
boot_stack_top:

    .section .note.GNU-stack, "", @progbits
