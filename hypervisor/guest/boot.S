/*
 * boot.S - the vmledger tiny guest: a 512-byte BIOS boot sector.
 *
 * It exists so that vmledger can exercise a real KVM/QEMU guest (clock,
 * power-off, reset, panic) without shipping a kernel or an OS image.
 * SeaBIOS loads it at 0000:7C00 in 16-bit real mode; from then on it
 * uses no BIOS services at all, only ports, so that its behaviour depends
 * on the emulated hardware and not on firmware details.
 *
 * Behaviour (see docs/guest.md for the protocol):
 *   - program COM1 (0x3F8) to 115200 8N1, print the banner;
 *   - forever: poll COM1 for a command byte (never blocking), and each
 *     time the CMOS RTC seconds register changes print
 *     "RTC YYYY-MM-DD hh:mm:ss\r\n";
 *   - when the ACPI power button is pressed (QMP system_powerdown,
 *     virsh shutdown), act as if "P" had been received;
 *   - commands, one per line (\r or \n terminated):
 *       T YYYYMMDDhhmmss  set the RTC          -> "OK T"
 *       P                 ACPI soft power-off  -> "OK P"
 *       X                 pvpanic "panicked"   -> "OK X", then halt
 *       R                 reset                -> "OK R"
 *       anything else                          -> "ERR"
 *
 * Build (see build.sh; the committed tinyguest.img must match):
 *   as --32 -o boot.o boot.S
 *   ld -m elf_i386 -Ttext 0x7c00 --oformat binary -o tinyguest.img boot.o
 *
 * Nothing beyond a 286 is needed (LIDT is the newest instruction; no
 * 32-bit operands; .arch i286 enforces it), so the image runs the same
 * under KVM and TCG.
 */

        .code16
        .arch   i286                    /* see the header; also keeps gas from
                                           promoting a short Jcc to a 386 one */
        .text
        .globl  _start

        .set    COM1,       0x3f8       /* data register (DLAB=0) */
        .set    COM1_LSR,   COM1+5      /* line status register */
        .set    LSR_DR,     0x01        /* a received byte is waiting */
        .set    LSR_THRE,   0x20        /* transmit holding register free */
        .set    LSR_TEMT,   0x40        /* transmitter completely idle */

        .set    CMOS_INDEX, 0x70
        .set    CMOS_DATA,  0x71
        .set    RTC_A,      0x0a        /* bit 7: update in progress */
        .set    RTC_B,      0x0b        /* bit 7 SET, bit 2 binary, bit 1 24h */

        /* ACPI PM1a block; SeaBIOS puts it at 0x600 on pc and q35 */
        .set    PM1A_STS,      0x600    /* status, write 1 to clear */
        .set    PM1A_EN,       0x602    /* enables: status bit -> SCI */
        .set    PM1A_CNT,      0x604    /* control: sleep/power-off */
        .set    PWRBTN,        0x0100   /* PWRBTN_STS / PWRBTN_EN */
        .set    SLP_EN_S5,     0x2000   /* SLP_EN, SLP_TYP=0 (QEMU's _S5) */
        .set    PVPANIC,       0x505    /* QEMU ISA pvpanic default port */

        /* Scratch RAM just past the sector; nothing else lives there. */
        .set    LINEBUF,    0x7e00      /* the command line being received */
        .set    LINEMAX,    32          /* longer lines are truncated -> ERR */
        .set    VALS,       LINEBUF+LINEMAX /* one RTC snapshot */
        .set    NFIELDS,    7           /* entries in the fields table */
        /*
         * CH is 0 throughout the main loop (CX only ever holds a line
         * length of at most LINEMAX, or a count that a LOOP ran down to 0),
         * so loop counts there are loaded with the shorter MOV to CL.
         */
        .if     LINEMAX > 0xff
        .error  "CH would not stay 0 in the main loop"
        .endif

_start:
        xor     %ax, %ax
        mov     %ax, %ds
        mov     %ax, %es
        mov     %ax, %ss                /* no interrupt until after the */
        mov     $0x7c00, %sp            /* next insn: SS:SP is consistent */
        cld
        /*
         * Interrupts stay on for one reason: the main loop HLTs until the
         * next BIOS timer tick (IRQ 0, 18.2 Hz, programmed by SeaBIOS) so
         * an idle guest does not burn a host CPU. We install no handlers
         * and unmask no interrupts ourselves.
         */
        sti
        /*
         * Ask QEMU to latch the ACPI power button: it sets PWRBTN_STS on
         * system_powerdown only while PWRBTN_EN is set (the bit is the
         * same in both registers); the main loop polls it. A reset clears
         * PM1a_EN again, so this runs on every boot. AX is still 0, so no
         * other event is enabled. PWRBTN_EN also raises the SCI (IRQ 9),
         * but SeaBIOS leaves IRQ 9 masked (and edge-triggered) in the PIC.
         * QEMU ignores byte accesses to the upper half of the PM1a
         * registers, hence the 16-bit OUT (and IN, below).
         */
        mov     $PM1A_EN, %dx
        mov     $PWRBTN>>8, %ah
        out     %ax, %dx
        /*
         * No far jump to normalise CS: every jump and call is IP-relative
         * and all data is addressed through DS=0, so 07C0:0000 and
         * 0000:7C00 entry points both work.
         */

        /*
         * Program the UART ourselves (the BIOS may not have, and its
         * settings are not ours to rely on). The table holds
         * (low byte of port, value) pairs for ports 0x3F8..0x3FC.
         */
        mov     $uart_init, %si
        mov     $COM1>>8, %dh
        mov     $(uart_init_end-uart_init)/2, %cx
1:      lodsb
        mov     %al, %dl
        lodsb
        out     %al, %dx
        loop    1b
        /*
         * Read RBR once. QEMU stops polling the chardev while the UART
         * cannot take input (e.g. a byte arrived before the FIFO was
         * enabled; enabling it discards that byte) and only looks again
         * when the guest reads RBR. Without this read, input sent while
         * the BIOS was still running would wedge the receive side.
         */
        mov     $COM1&0xff, %dl
        in      %dx, %al

        /*
         * Force 24-hour mode so the hours register needs no AM/PM
         * decoding. SeaBIOS already selects it; QEMU's RTC reformats its
         * registers on the fly, so switching does not corrupt the time.
         */
        mov     $0xff02, %bx            /* B = (B & 0xff) | 0x02 */
        call    modify_b                /* AL = register B */

        /*
         * Patch the radix of the AAM/AAD instructions below: 10 if the RTC
         * counts in binary, 16 if in BCD (register B bit 2). With it, AAM
         * splits a register into two digits and AAD joins two digits into
         * a register, in either mode. Once per boot is enough: only the
         * guest writes register B, and never its data-mode bit. (Patching
         * immediates is what fits in 512 bytes; real and emulated x86 CPUs
         * both notice stores to code that has not run yet.)
         */
        test    $0x04, %al
        mov     $16, %al
        jz      1f
        mov     $10, %al
1:      mov     %al, aam_radix
        mov     %al, aad_radix

        mov     $banner, %si
        call    puts
        mov     $LINEBUF, %di           /* DI = end of the received line */

/*
 * Main loop: alternate between a non-blocking look at the UART and a look
 * at the RTC, so neither the clock output nor command input can starve
 * the other. When there is nothing to do, check the power button, then
 * sleep until the next interrupt (at most one timer tick, ~55 ms): that
 * bounds the command latency, the power button latency and the lag of
 * the clock line behind the RTC.
 */
idle:
        mov     $PM1A_STS, %dx
        in      %dx, %ax
        sahf                            /* CF = AH bit 0 = PWRBTN_STS */
        jc      button
        hlt
main:
        mov     $COM1_LSR, %dx
        in      %dx, %al
        test    $LSR_DR, %al
        jz      clock
        mov     $COM1&0xff, %dl         /* DH is already COM1>>8 */
        in      %dx, %al
        cmp     $'\r', %al
        je      1f                      /* (lands on a taken je: short jumps) */
        cmp     $'\n', %al
1:      je      line
        cmp     $LINEBUF+LINEMAX, %di
        jae     main                    /* overlong: drop, line will be ERR */
        stosb
        jmp     main

/*
 * The power button was pressed: power off exactly as "P" does, "OK P"
 * included. PWRBTN_STS stays set; nobody is left to clear it.
 */
button:
        mov     $'P', %al
        jmp     poweroff

clock:
        mov     $RTC_A, %al             /* registers are undefined while */
        call    cmos_read               /* the RTC updates: wait it out */
        test    $0x80, %al
        jnz     clock
        xor     %al, %al                /* register 0: seconds */
        call    cmos_read
        cmp     last_sec, %al
        je      idle                    /* print once per second change */
        mov     %al, %bl

        /*
         * Snapshot all fields. The table ends with the seconds register;
         * if it still equals the value read above, no RTC update happened
         * in between and the snapshot is consistent. Otherwise try again
         * on the next loop iteration.
         */
        push    %di
        mov     $VALS, %di
        mov     $fields, %si
        mov     $NFIELDS, %cl
1:      lodsw                           /* AL = register, AH = separator */
        call    cmos_read               /* AL = its value */
        stosw                           /* VALS: (value, separator) pairs */
        loop    1b
        pop     %di
        cmp     %al, %bl
        jne     main
        mov     %al, last_sec

        mov     $rtc_str, %si
        call    puts
        mov     $VALS, %si
        mov     $NFIELDS, %cl
2:      lodsw                           /* AL = value, AH = separator */
        xchg    %al, %ah
        call    putc                    /* separator first (none if NUL) */
        mov     %ah, %al
        aam     $16                     /* AH = tens, AL = ones (patched) */
aam_radix = . - 1
        cmp     $NFIELDS, %cl
        jne     4f
        /*
         * Century (first field): register 0x32 is not standard; if it
         * does not hold a plausible value (10..99) assume 20xx.
         */
        dec     %ah
        cmp     $8, %ah
        jbe     5f
        mov     $0x0100, %ax            /* becomes "20" after the inc */
5:      inc     %ah
4:      add     $0x3030, %ax            /* digits to ASCII */
        xchg    %al, %ah
        call    putc
        mov     %ah, %al
        call    putc
        loop    2b
        mov     $crlf, %si
        call    puts
        jmp     main

/*
 * A complete line is in LINEBUF..DI. Dispatch it and reset the buffer.
 */
line:
        mov     %di, %cx
        mov     $LINEBUF, %di
        sub     %di, %cx                /* CX = line length */
        jcxz    to_main                 /* empty line, e.g. the \n of \r\n */
        mov     (%di), %al              /* AL = the command letter */
        dec     %cx
        jnz     set_time                /* only T takes arguments */
        cmp     $'P', %al
        je      poweroff
        cmp     $'X', %al
        je      panic
        cmp     $'R', %al
        je      reboot
error:
        mov     $err_str, %si
        call    puts
to_main:
        jmp     main

/*
 * "T YYYYMMDDhhmmss": validate all of it before touching the RTC, so a
 * malformed command cannot leave a half-written time behind.
 */
set_time:
        cmp     $15, %cx                /* length 16 minus the letter */
        jne     error
        cmpw    $0x2054, (%di)          /* "T " */
        jne     error
        lea     2(%di), %si
        mov     $14, %cl
1:      lodsb
        sub     $'0', %al
        cmp     $9, %al
        ja      error
        loop    1b

        mov     $0xff80, %bx            /* SET: freeze updates while writing */
        call    modify_b
        lea     2(%di), %si
        mov     $NFIELDS, %cl
        /*
         * Digit pair i is at LINEBUF+2+2*i, and its register in entry i of
         * the fields table, so SI (before the LODSW) addresses both.
         */
2:      mov     fields-(LINEBUF+2)(%si), %al
        out     %al, $CMOS_INDEX
        lodsw                           /* AL = tens char, AH = ones char */
        xchg    %al, %ah
        sub     $0x3030, %ax            /* AH = tens, AL = ones */
        aad     $16                     /* AL = AH*radix + AL (patched) */
aad_radix = . - 1
        out     %al, $CMOS_DATA
        loop    2b
        mov     $0x7f00, %bx            /* clear SET: the RTC runs again, */
        call    modify_b                /* QEMU reports RTC_CHANGE here */
        mov     $'T', %al
        call    ack
        jmp     main

/*
 * "P" and the power button: ACPI S5 by writing SLP_EN with SLP_TYP 0 (the
 * _S5 value in QEMU's DSDT) to PM1a_CNT. SeaBIOS programs the PM block of
 * both PIIX4 (pc) and ICH9 (q35) to 0x600 whenever QEMU supplies the ACPI
 * tables, which every QEMU since 1.7 does. (Before that it left PIIX4 at
 * 0xb000; the guest no longer tries 0xb004 as well.)
 */
poweroff:
        call    ack
        mov     $SLP_EN_S5, %ax
        mov     $PM1A_CNT, %dx
        out     %ax, %dx
        jmp     halt                    /* no ACPI: nothing more we can do */

/*
 * "X": tell QEMU's pvpanic device the guest panicked, then stop.
 */
panic:
        call    ack
        mov     $PVPANIC, %dx
        mov     $1, %al                 /* PVPANIC_PANICKED */
        out     %al, %dx
halt:
        cli
        hlt
        jmp     halt

/*
 * "R": pulse reset through the 8042 keyboard controller; if there is
 * none, load an empty IDT and trap so the CPU triple-faults, which
 * resets it too. The pause in between matters under TCG: without a
 * branch, the OUT and the fault share a translation block, so the CPU
 * would fault before QEMU acts on the first reset request and the guest
 * would be reset twice.
 */
reboot:
        call    ack
        mov     $0xfe, %al
        out     %al, $0x64
1:      loop    1b                      /* CX = 0 here: 65536 rounds */
        lidt    idt_empty
        int3                            /* does not return */

/* ---- subroutines ---- */

/* Print "OK <AL>\r\n" and wait until it has left the UART, because the
 * caller may be about to stop or reset the machine. */
ack:
        mov     %al, ok_cmd
        mov     $ok_str, %si
        call    puts
        mov     $COM1_LSR&0xff, %dl     /* putc left DH = COM1>>8 */
1:      in      %dx, %al
        test    $LSR_TEMT, %al
        jz      1b
        ret

/* Print the NUL-terminated string at DS:SI. */
puts:
        lodsb
        call    putc
        jnz     puts
        ret

/*
 * Write AL to COM1 once it can take it; a NUL is not written. Returns
 * ZF=1 iff AL was NUL (puts relies on that). Preserves AX, clobbers DX.
 */
putc:
        test    %al, %al
        jz      2f
        push    %ax
        mov     $COM1_LSR, %dx
1:      in      %dx, %al
        test    $LSR_THRE, %al
        jz      1b                      /* leaves ZF=0 when it falls out */
        pop     %ax
        mov     $COM1&0xff, %dl
        out     %al, %dx
2:      ret

/* Register B = (B & BH) | BL. */
modify_b:
        mov     $RTC_B, %al
        call    cmos_read
        and     %bh, %al
        or      %bl, %al
        out     %al, $CMOS_DATA         /* the index still selects B */
        ret

/* AL = CMOS register AL. */
cmos_read:
        out     %al, $CMOS_INDEX
        in      $CMOS_DATA, %al
        ret

/* ---- data ---- */

uart_init:
        .byte   0xf9, 0x00              /* IER: no UART interrupts */
        .byte   0xfb, 0x80              /* LCR: DLAB=1 to reach the divisor */
        .byte   0xf8, 0x01              /* DLL: divisor 1 = 115200 baud */
        .byte   0xf9, 0x00              /* DLM */
        .byte   0xfb, 0x03              /* LCR: 8N1, DLAB=0 */
        .byte   0xfa, 0xc7              /* FCR: enable and clear FIFOs */
        .byte   0xfc, 0x03              /* MCR: DTR, RTS */
uart_init_end:

/* (RTC register, separator printed before the field), in display order,
 * which is also the order of the digits in the T command. Seconds must
 * stay last: the snapshot consistency check relies on it. */
fields:
        .byte   0x32, ' '               /* century (non-standard, QEMU has it) */
        .byte   0x09, 0                 /* year */
        .byte   0x08, '-'               /* month */
        .byte   0x07, '-'               /* day of month */
        .byte   0x04, ' '               /* hours */
        .byte   0x02, ':'               /* minutes */
        .byte   0x00, ':'               /* seconds */
        .if     (. - fields) != 2*NFIELDS
        .error  "NFIELDS does not match the fields table"
        .endif

last_sec:
        .byte   0xff                    /* never a valid seconds value */

banner:
        .asciz  "VMLEDGER TINY GUEST v1\r\n"
rtc_str:
        .asciz  "RTC"
err_str:
        .asciz  "ERR\r\n"
ok_str:
        .ascii  "OK "
ok_cmd:
        .byte   '?'
crlf:
        .asciz  "\r\n"

/* IDT limit 0 (the base, whatever follows, is irrelevant): every
 * interrupt vector lies outside it, so the CPU triple-faults. */
idt_empty:
        .word   0

        .org    510
        .word   0xaa55                  /* BIOS boot signature */
