/*
 * 
 * Disassembling to symbolic ASL+ operators
 *
 *
 * Original Table Header:
 *     Signature        "DSDT"
 *     Length           0x00000610 (1552)
 *     Revision         0x02
 *     Checksum         0xF7
 *     OEM ID           "RVNANT"
 *     OEM Table ID     "REVENANT"
 *     OEM Revision     0x00000001 (1)
 *     Compiler ID      "RVNT"
 *     Compiler Version 0x00000001 (1)
 */
DefinitionBlock ("", "DSDT", 2, "RVNANT", "REVENANT", 0x00000001)
{
    Scope (\_SB)
    {
        Device (V000)
        {
            Name (_HID, "LNRO0005")  // _HID: Hardware ID
            Name (_UID, Zero)  // _UID: Unique ID
            Name (_CRS, ResourceTemplate ()  // _CRS: Current Resource Settings
            {
                Memory32Fixed (ReadWrite,
                    0xD0000000,         // Address Base
                    0x00001000,         // Address Length
                    )
                Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive, ,, )
                {
                    0x00000005,
                }
            })
        }

        Device (V001)
        {
            Name (_HID, "LNRO0005")  // _HID: Hardware ID
            Name (_UID, One)  // _UID: Unique ID
            Name (_CRS, ResourceTemplate ()  // _CRS: Current Resource Settings
            {
                Memory32Fixed (ReadWrite,
                    0xD0001000,         // Address Base
                    0x00001000,         // Address Length
                    )
                Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive, ,, )
                {
                    0x00000006,
                }
            })
        }

        Device (V002)
        {
            Name (_HID, "LNRO0005")  // _HID: Hardware ID
            Name (_UID, 0x02)  // _UID: Unique ID
            Name (_CRS, ResourceTemplate ()  // _CRS: Current Resource Settings
            {
                Memory32Fixed (ReadWrite,
                    0xD0002000,         // Address Base
                    0x00001000,         // Address Length
                    )
                Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive, ,, )
                {
                    0x00000007,
                }
            })
        }

        Device (COM1)
        {
            Name (_HID, EisaId ("PNP0501") /* 16550A-compatible COM Serial Port */)  // _HID: Hardware ID
            Name (_UID, Zero)  // _UID: Unique ID
            Name (_CRS, ResourceTemplate ()  // _CRS: Current Resource Settings
            {
                IO (Decode16,
                    0x03F8,             // Range Minimum
                    0x03F8,             // Range Maximum
                    0x01,               // Alignment
                    0x08,               // Length
                    )
                Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive, ,, )
                {
                    0x00000004,
                }
            })
        }

        Device (PWRB)
        {
            Name (_HID, EisaId ("PNP0C0C") /* Power Button Device */)  // _HID: Hardware ID
            Name (_UID, Zero)  // _UID: Unique ID
        }

        Device (GED)
        {
            Name (_HID, "ACPI0013" /* Generic Event Device */)  // _HID: Hardware ID
            Name (_UID, Zero)  // _UID: Unique ID
            Name (_CRS, ResourceTemplate ()  // _CRS: Current Resource Settings
            {
                Interrupt (ResourceConsumer, Level, ActiveHigh, Exclusive, ,, )
                {
                    0x00000017,
                }
            })
            OperationRegion (GDST, SystemMemory, 0xF0000000, 0x10)
            Field (GDST, DWordAcc, NoLock, WriteAsZeros)
            {
                GDAT,   32
            }

            Method (_EVT, 1, Serialized)  // _EVT: Event
            {
                Local0 = GDAT /* \_SB_.GED_.GDAT */
                If (((Local0 & One) == One))
                {
                    \_SB.CPUS.CSCN ()
                }

                If (((Local0 & 0x04) == 0x04))
                {
                    Notify (\_SB.PWRB, 0x80) // Status Change
                }

                If (((Local0 & 0x08) == 0x08))
                {
                    Notify (\_SB.VGEN, 0x80) // Status Change
                }
            }
        }

        Device (CPUS)
        {
            Name (_HID, "ACPI0010" /* Processor Container Device */)  // _HID: Hardware ID
            Name (_CID, EisaId ("PNP0A05") /* Generic Container Device */)  // _CID: Compatible ID
            OperationRegion (PRST, SystemMemory, 0xF0001000, 0x10)
            Field (PRST, ByteAcc, NoLock, WriteAsZeros)
            {
                Offset (0x04), 
                CPEN,   1, 
                CINS,   1, 
                CRMV,   1, 
                CEJF,   1, 
                Offset (0x05)
            }

            Field (PRST, DWordAcc, NoLock, Preserve)
            {
                CSEL,   32
            }

            Mutex (CPLK, 0x00)
            Method (CSTA, 1, NotSerialized)
            {
                Acquire (CPLK, 0xFFFF)
                CSEL = Arg0
                Local0 = Zero
                If ((CPEN == One))
                {
                    Local0 = 0x0F
                }

                Release (CPLK)
                Return (Local0)
            }

            Method (CEJ0, 1, NotSerialized)
            {
                Acquire (CPLK, 0xFFFF)
                CSEL = Arg0
                CEJF = One
                Release (CPLK)
            }

            Method (CMAT, 1, NotSerialized)
            {
                Local1 = Buffer (0x08)
                    {
                         0x00, 0x08, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00   // ........
                    }
                Local1 [0x02] = Arg0
                Local1 [0x03] = Arg0
                If ((CSTA (Arg0) == 0x0F))
                {
                    Local1 [0x04] = One
                }

                Return (Local1)
            }

            Method (CTFY, 2, NotSerialized)
            {
                If ((Arg0 == Zero))
                {
                    Notify (C000, Arg1)
                }

                If ((Arg0 == One))
                {
                    Notify (C001, Arg1)
                }

                If ((Arg0 == 0x02))
                {
                    Notify (C002, Arg1)
                }

                If ((Arg0 == 0x03))
                {
                    Notify (C003, Arg1)
                }

                If ((Arg0 == 0x04))
                {
                    Notify (C004, Arg1)
                }

                If ((Arg0 == 0x05))
                {
                    Notify (C005, Arg1)
                }

                If ((Arg0 == 0x06))
                {
                    Notify (C006, Arg1)
                }

                If ((Arg0 == 0x07))
                {
                    Notify (C007, Arg1)
                }
            }

            Method (CSCN, 0, Serialized)
            {
                Acquire (CPLK, 0xFFFF)
                Local0 = Zero
                While ((Local0 < 0x08))
                {
                    CSEL = Local0
                    If ((CINS == One))
                    {
                        CTFY (Local0, One)
                        CINS = One
                    }

                    If ((CRMV == One))
                    {
                        CTFY (Local0, 0x03)
                        CRMV = One
                    }

                    Local0 += One
                }

                Release (CPLK)
            }

            Device (C000)
            {
                Name (_HID, "ACPI0007" /* Processor Device */)  // _HID: Hardware ID
                Name (_UID, Zero)  // _UID: Unique ID
                Method (_STA, 0, NotSerialized)  // _STA: Status
                {
                    Return (CSTA (Zero))
                }

                Method (_MAT, 0, NotSerialized)  // _MAT: Multiple APIC Table Entry
                {
                    Return (CMAT (Zero))
                }

                Method (_EJ0, 1, NotSerialized)  // _EJx: Eject Device, x=0-9
                {
                    CEJ0 (Zero)
                }
            }

            Device (C001)
            {
                Name (_HID, "ACPI0007" /* Processor Device */)  // _HID: Hardware ID
                Name (_UID, One)  // _UID: Unique ID
                Method (_STA, 0, NotSerialized)  // _STA: Status
                {
                    Return (CSTA (One))
                }

                Method (_MAT, 0, NotSerialized)  // _MAT: Multiple APIC Table Entry
                {
                    Return (CMAT (One))
                }

                Method (_EJ0, 1, NotSerialized)  // _EJx: Eject Device, x=0-9
                {
                    CEJ0 (One)
                }
            }

            Device (C002)
            {
                Name (_HID, "ACPI0007" /* Processor Device */)  // _HID: Hardware ID
                Name (_UID, 0x02)  // _UID: Unique ID
                Method (_STA, 0, NotSerialized)  // _STA: Status
                {
                    Return (CSTA (0x02))
                }

                Method (_MAT, 0, NotSerialized)  // _MAT: Multiple APIC Table Entry
                {
                    Return (CMAT (0x02))
                }

                Method (_EJ0, 1, NotSerialized)  // _EJx: Eject Device, x=0-9
                {
                    CEJ0 (0x02)
                }
            }

            Device (C003)
            {
                Name (_HID, "ACPI0007" /* Processor Device */)  // _HID: Hardware ID
                Name (_UID, 0x03)  // _UID: Unique ID
                Method (_STA, 0, NotSerialized)  // _STA: Status
                {
                    Return (CSTA (0x03))
                }

                Method (_MAT, 0, NotSerialized)  // _MAT: Multiple APIC Table Entry
                {
                    Return (CMAT (0x03))
                }

                Method (_EJ0, 1, NotSerialized)  // _EJx: Eject Device, x=0-9
                {
                    CEJ0 (0x03)
                }
            }

            Device (C004)
            {
                Name (_HID, "ACPI0007" /* Processor Device */)  // _HID: Hardware ID
                Name (_UID, 0x04)  // _UID: Unique ID
                Method (_STA, 0, NotSerialized)  // _STA: Status
                {
                    Return (CSTA (0x04))
                }

                Method (_MAT, 0, NotSerialized)  // _MAT: Multiple APIC Table Entry
                {
                    Return (CMAT (0x04))
                }

                Method (_EJ0, 1, NotSerialized)  // _EJx: Eject Device, x=0-9
                {
                    CEJ0 (0x04)
                }
            }

            Device (C005)
            {
                Name (_HID, "ACPI0007" /* Processor Device */)  // _HID: Hardware ID
                Name (_UID, 0x05)  // _UID: Unique ID
                Method (_STA, 0, NotSerialized)  // _STA: Status
                {
                    Return (CSTA (0x05))
                }

                Method (_MAT, 0, NotSerialized)  // _MAT: Multiple APIC Table Entry
                {
                    Return (CMAT (0x05))
                }

                Method (_EJ0, 1, NotSerialized)  // _EJx: Eject Device, x=0-9
                {
                    CEJ0 (0x05)
                }
            }

            Device (C006)
            {
                Name (_HID, "ACPI0007" /* Processor Device */)  // _HID: Hardware ID
                Name (_UID, 0x06)  // _UID: Unique ID
                Method (_STA, 0, NotSerialized)  // _STA: Status
                {
                    Return (CSTA (0x06))
                }

                Method (_MAT, 0, NotSerialized)  // _MAT: Multiple APIC Table Entry
                {
                    Return (CMAT (0x06))
                }

                Method (_EJ0, 1, NotSerialized)  // _EJx: Eject Device, x=0-9
                {
                    CEJ0 (0x06)
                }
            }

            Device (C007)
            {
                Name (_HID, "ACPI0007" /* Processor Device */)  // _HID: Hardware ID
                Name (_UID, 0x07)  // _UID: Unique ID
                Method (_STA, 0, NotSerialized)  // _STA: Status
                {
                    Return (CSTA (0x07))
                }

                Method (_MAT, 0, NotSerialized)  // _MAT: Multiple APIC Table Entry
                {
                    Return (CMAT (0x07))
                }

                Method (_EJ0, 1, NotSerialized)  // _EJx: Eject Device, x=0-9
                {
                    CEJ0 (0x07)
                }
            }
        }

        Device (VGEN)
        {
            Name (_HID, "RVNT0001")  // _HID: Hardware ID
            Name (_CID, "VM_Gen_Counter")  // _CID: Compatible ID
            Name (_DDN, "VM_Gen_Counter")  // _DDN: DOS Device Name
            Method (ADDR, 0, NotSerialized)
            {
                Return (Package (0x02)
                {
                    0x000EFF00, 
                    Zero
                })
            }
        }
    }

    Name (_S3, Package (0x04)  // _S3_: S3 System State
    {
        One, 
        Zero, 
        Zero, 
        Zero
    })
    Name (_S4, Package (0x04)  // _S4_: S4 System State
    {
        0x02, 
        Zero, 
        Zero, 
        Zero
    })
    Name (_S5, Package (0x04)  // _S5_: S5 System State
    {
        0x05, 
        Zero, 
        Zero, 
        Zero
    })
}

