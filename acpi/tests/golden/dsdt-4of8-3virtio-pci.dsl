/*
 * 
 * Disassembling to symbolic ASL+ operators
 *
 *
 * Original Table Header:
 *     Signature        "DSDT"
 *     Length           0x00000FED (4077)
 *     Revision         0x02
 *     Checksum         0xB1
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

                If (((Local0 & 0x10) == 0x10))
                {
                    \_SB.PCI0.PCNT ()
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

        Device (MBRD)
        {
            Name (_HID, EisaId ("PNP0C02") /* PNP Motherboard Resources */)  // _HID: Hardware ID
            Name (_UID, Zero)  // _UID: Unique ID
            Name (_CRS, ResourceTemplate ()  // _CRS: Current Resource Settings
            {
                Memory32Fixed (ReadWrite,
                    0xE0000000,         // Address Base
                    0x00100000,         // Address Length
                    )
            })
        }

        Device (PHPR)
        {
            Name (_HID, EisaId ("PNP0A06") /* Generic Container Device */)  // _HID: Hardware ID
            Name (_STA, 0x0B)  // _STA: Status
            Name (_UID, "PCI Hotplug Controller")  // _UID: Unique ID
            Name (_CRS, ResourceTemplate ()  // _CRS: Current Resource Settings
            {
                Memory32Fixed (ReadWrite,
                    0xF0002000,         // Address Base
                    0x00000010,         // Address Length
                    )
            })
            Mutex (BLCK, 0x00)
            OperationRegion (PCST, SystemMemory, 0xF0002000, 0x10)
            Field (PCST, DWordAcc, NoLock, WriteAsZeros)
            {
                PCIU,   32, 
                PCID,   32, 
                B0EJ,   32, 
                PSEG,   32
            }

            Method (PCEJ, 1, NotSerialized)
            {
                Acquire (BLCK, 0xFFFF)
                B0EJ = (One << Arg0)
                Release (BLCK)
            }
        }

        Device (PCI0)
        {
            Name (_HID, EisaId ("PNP0A08") /* PCI Express Bus */)  // _HID: Hardware ID
            Name (_CID, EisaId ("PNP0A03") /* PCI Bus */)  // _CID: Compatible ID
            Name (_SEG, Zero)  // _SEG: PCI Segment
            Name (_UID, Zero)  // _UID: Unique ID
            Name (_BBN, Zero)  // _BBN: BIOS Bus Number
            Name (_CRS, ResourceTemplate ()  // _CRS: Current Resource Settings
            {
                WordBusNumber (ResourceProducer, MinFixed, MaxFixed, PosDecode,
                    0x0000,             // Granularity
                    0x0000,             // Range Minimum
                    0x0000,             // Range Maximum
                    0x0000,             // Translation Offset
                    0x0001,             // Length
                    ,, )
                IO (Decode16,
                    0x0CF8,             // Range Minimum
                    0x0CF8,             // Range Maximum
                    0x01,               // Alignment
                    0x08,               // Length
                    )
                DWordMemory (ResourceProducer, PosDecode, MinFixed, MaxFixed, Cacheable, ReadWrite,
                    0x00000000,         // Granularity
                    0xD0000000,         // Range Minimum
                    0xDFFFFFFF,         // Range Maximum
                    0x00000000,         // Translation Offset
                    0x10000000,         // Length
                    ,, , AddressRangeMemory, TypeStatic)
            })
            Device (S01)
            {
                Name (_ADR, 0x00010000)  // _ADR: Address
                Name (_SUN, One)  // _SUN: Slot User Number
                Method (_EJ0, 1, NotSerialized)  // _EJx: Eject Device, x=0-9
                {
                    \_SB.PHPR.PCEJ (One)
                }
            }

            Device (S02)
            {
                Name (_ADR, 0x00020000)  // _ADR: Address
                Name (_SUN, 0x02)  // _SUN: Slot User Number
                Method (_EJ0, 1, NotSerialized)  // _EJx: Eject Device, x=0-9
                {
                    \_SB.PHPR.PCEJ (0x02)
                }
            }

            Device (S03)
            {
                Name (_ADR, 0x00030000)  // _ADR: Address
                Name (_SUN, 0x03)  // _SUN: Slot User Number
                Method (_EJ0, 1, NotSerialized)  // _EJx: Eject Device, x=0-9
                {
                    \_SB.PHPR.PCEJ (0x03)
                }
            }

            Device (S04)
            {
                Name (_ADR, 0x00040000)  // _ADR: Address
                Name (_SUN, 0x04)  // _SUN: Slot User Number
                Method (_EJ0, 1, NotSerialized)  // _EJx: Eject Device, x=0-9
                {
                    \_SB.PHPR.PCEJ (0x04)
                }
            }

            Device (S05)
            {
                Name (_ADR, 0x00050000)  // _ADR: Address
                Name (_SUN, 0x05)  // _SUN: Slot User Number
                Method (_EJ0, 1, NotSerialized)  // _EJx: Eject Device, x=0-9
                {
                    \_SB.PHPR.PCEJ (0x05)
                }
            }

            Device (S06)
            {
                Name (_ADR, 0x00060000)  // _ADR: Address
                Name (_SUN, 0x06)  // _SUN: Slot User Number
                Method (_EJ0, 1, NotSerialized)  // _EJx: Eject Device, x=0-9
                {
                    \_SB.PHPR.PCEJ (0x06)
                }
            }

            Device (S07)
            {
                Name (_ADR, 0x00070000)  // _ADR: Address
                Name (_SUN, 0x07)  // _SUN: Slot User Number
                Method (_EJ0, 1, NotSerialized)  // _EJx: Eject Device, x=0-9
                {
                    \_SB.PHPR.PCEJ (0x07)
                }
            }

            Device (S08)
            {
                Name (_ADR, 0x00080000)  // _ADR: Address
                Name (_SUN, 0x08)  // _SUN: Slot User Number
                Method (_EJ0, 1, NotSerialized)  // _EJx: Eject Device, x=0-9
                {
                    \_SB.PHPR.PCEJ (0x08)
                }
            }

            Device (S09)
            {
                Name (_ADR, 0x00090000)  // _ADR: Address
                Name (_SUN, 0x09)  // _SUN: Slot User Number
                Method (_EJ0, 1, NotSerialized)  // _EJx: Eject Device, x=0-9
                {
                    \_SB.PHPR.PCEJ (0x09)
                }
            }

            Device (S0A)
            {
                Name (_ADR, 0x000A0000)  // _ADR: Address
                Name (_SUN, 0x0A)  // _SUN: Slot User Number
                Method (_EJ0, 1, NotSerialized)  // _EJx: Eject Device, x=0-9
                {
                    \_SB.PHPR.PCEJ (0x0A)
                }
            }

            Device (S0B)
            {
                Name (_ADR, 0x000B0000)  // _ADR: Address
                Name (_SUN, 0x0B)  // _SUN: Slot User Number
                Method (_EJ0, 1, NotSerialized)  // _EJx: Eject Device, x=0-9
                {
                    \_SB.PHPR.PCEJ (0x0B)
                }
            }

            Device (S0C)
            {
                Name (_ADR, 0x000C0000)  // _ADR: Address
                Name (_SUN, 0x0C)  // _SUN: Slot User Number
                Method (_EJ0, 1, NotSerialized)  // _EJx: Eject Device, x=0-9
                {
                    \_SB.PHPR.PCEJ (0x0C)
                }
            }

            Device (S0D)
            {
                Name (_ADR, 0x000D0000)  // _ADR: Address
                Name (_SUN, 0x0D)  // _SUN: Slot User Number
                Method (_EJ0, 1, NotSerialized)  // _EJx: Eject Device, x=0-9
                {
                    \_SB.PHPR.PCEJ (0x0D)
                }
            }

            Device (S0E)
            {
                Name (_ADR, 0x000E0000)  // _ADR: Address
                Name (_SUN, 0x0E)  // _SUN: Slot User Number
                Method (_EJ0, 1, NotSerialized)  // _EJx: Eject Device, x=0-9
                {
                    \_SB.PHPR.PCEJ (0x0E)
                }
            }

            Device (S0F)
            {
                Name (_ADR, 0x000F0000)  // _ADR: Address
                Name (_SUN, 0x0F)  // _SUN: Slot User Number
                Method (_EJ0, 1, NotSerialized)  // _EJx: Eject Device, x=0-9
                {
                    \_SB.PHPR.PCEJ (0x0F)
                }
            }

            Device (S10)
            {
                Name (_ADR, 0x00100000)  // _ADR: Address
                Name (_SUN, 0x10)  // _SUN: Slot User Number
                Method (_EJ0, 1, NotSerialized)  // _EJx: Eject Device, x=0-9
                {
                    \_SB.PHPR.PCEJ (0x10)
                }
            }

            Device (S11)
            {
                Name (_ADR, 0x00110000)  // _ADR: Address
                Name (_SUN, 0x11)  // _SUN: Slot User Number
                Method (_EJ0, 1, NotSerialized)  // _EJx: Eject Device, x=0-9
                {
                    \_SB.PHPR.PCEJ (0x11)
                }
            }

            Device (S12)
            {
                Name (_ADR, 0x00120000)  // _ADR: Address
                Name (_SUN, 0x12)  // _SUN: Slot User Number
                Method (_EJ0, 1, NotSerialized)  // _EJx: Eject Device, x=0-9
                {
                    \_SB.PHPR.PCEJ (0x12)
                }
            }

            Device (S13)
            {
                Name (_ADR, 0x00130000)  // _ADR: Address
                Name (_SUN, 0x13)  // _SUN: Slot User Number
                Method (_EJ0, 1, NotSerialized)  // _EJx: Eject Device, x=0-9
                {
                    \_SB.PHPR.PCEJ (0x13)
                }
            }

            Device (S14)
            {
                Name (_ADR, 0x00140000)  // _ADR: Address
                Name (_SUN, 0x14)  // _SUN: Slot User Number
                Method (_EJ0, 1, NotSerialized)  // _EJx: Eject Device, x=0-9
                {
                    \_SB.PHPR.PCEJ (0x14)
                }
            }

            Device (S15)
            {
                Name (_ADR, 0x00150000)  // _ADR: Address
                Name (_SUN, 0x15)  // _SUN: Slot User Number
                Method (_EJ0, 1, NotSerialized)  // _EJx: Eject Device, x=0-9
                {
                    \_SB.PHPR.PCEJ (0x15)
                }
            }

            Device (S16)
            {
                Name (_ADR, 0x00160000)  // _ADR: Address
                Name (_SUN, 0x16)  // _SUN: Slot User Number
                Method (_EJ0, 1, NotSerialized)  // _EJx: Eject Device, x=0-9
                {
                    \_SB.PHPR.PCEJ (0x16)
                }
            }

            Device (S17)
            {
                Name (_ADR, 0x00170000)  // _ADR: Address
                Name (_SUN, 0x17)  // _SUN: Slot User Number
                Method (_EJ0, 1, NotSerialized)  // _EJx: Eject Device, x=0-9
                {
                    \_SB.PHPR.PCEJ (0x17)
                }
            }

            Device (S18)
            {
                Name (_ADR, 0x00180000)  // _ADR: Address
                Name (_SUN, 0x18)  // _SUN: Slot User Number
                Method (_EJ0, 1, NotSerialized)  // _EJx: Eject Device, x=0-9
                {
                    \_SB.PHPR.PCEJ (0x18)
                }
            }

            Device (S19)
            {
                Name (_ADR, 0x00190000)  // _ADR: Address
                Name (_SUN, 0x19)  // _SUN: Slot User Number
                Method (_EJ0, 1, NotSerialized)  // _EJx: Eject Device, x=0-9
                {
                    \_SB.PHPR.PCEJ (0x19)
                }
            }

            Device (S1A)
            {
                Name (_ADR, 0x001A0000)  // _ADR: Address
                Name (_SUN, 0x1A)  // _SUN: Slot User Number
                Method (_EJ0, 1, NotSerialized)  // _EJx: Eject Device, x=0-9
                {
                    \_SB.PHPR.PCEJ (0x1A)
                }
            }

            Device (S1B)
            {
                Name (_ADR, 0x001B0000)  // _ADR: Address
                Name (_SUN, 0x1B)  // _SUN: Slot User Number
                Method (_EJ0, 1, NotSerialized)  // _EJx: Eject Device, x=0-9
                {
                    \_SB.PHPR.PCEJ (0x1B)
                }
            }

            Device (S1C)
            {
                Name (_ADR, 0x001C0000)  // _ADR: Address
                Name (_SUN, 0x1C)  // _SUN: Slot User Number
                Method (_EJ0, 1, NotSerialized)  // _EJx: Eject Device, x=0-9
                {
                    \_SB.PHPR.PCEJ (0x1C)
                }
            }

            Device (S1D)
            {
                Name (_ADR, 0x001D0000)  // _ADR: Address
                Name (_SUN, 0x1D)  // _SUN: Slot User Number
                Method (_EJ0, 1, NotSerialized)  // _EJx: Eject Device, x=0-9
                {
                    \_SB.PHPR.PCEJ (0x1D)
                }
            }

            Device (S1E)
            {
                Name (_ADR, 0x001E0000)  // _ADR: Address
                Name (_SUN, 0x1E)  // _SUN: Slot User Number
                Method (_EJ0, 1, NotSerialized)  // _EJx: Eject Device, x=0-9
                {
                    \_SB.PHPR.PCEJ (0x1E)
                }
            }

            Device (S1F)
            {
                Name (_ADR, 0x001F0000)  // _ADR: Address
                Name (_SUN, 0x1F)  // _SUN: Slot User Number
                Method (_EJ0, 1, NotSerialized)  // _EJx: Eject Device, x=0-9
                {
                    \_SB.PHPR.PCEJ (0x1F)
                }
            }

            Method (DVNT, 2, NotSerialized)
            {
                If (((Arg0 & 0x02) == 0x02))
                {
                    Notify (S01, Arg1)
                }

                If (((Arg0 & 0x04) == 0x04))
                {
                    Notify (S02, Arg1)
                }

                If (((Arg0 & 0x08) == 0x08))
                {
                    Notify (S03, Arg1)
                }

                If (((Arg0 & 0x10) == 0x10))
                {
                    Notify (S04, Arg1)
                }

                If (((Arg0 & 0x20) == 0x20))
                {
                    Notify (S05, Arg1)
                }

                If (((Arg0 & 0x40) == 0x40))
                {
                    Notify (S06, Arg1)
                }

                If (((Arg0 & 0x80) == 0x80))
                {
                    Notify (S07, Arg1)
                }

                If (((Arg0 & 0x0100) == 0x0100))
                {
                    Notify (S08, Arg1)
                }

                If (((Arg0 & 0x0200) == 0x0200))
                {
                    Notify (S09, Arg1)
                }

                If (((Arg0 & 0x0400) == 0x0400))
                {
                    Notify (S0A, Arg1)
                }

                If (((Arg0 & 0x0800) == 0x0800))
                {
                    Notify (S0B, Arg1)
                }

                If (((Arg0 & 0x1000) == 0x1000))
                {
                    Notify (S0C, Arg1)
                }

                If (((Arg0 & 0x2000) == 0x2000))
                {
                    Notify (S0D, Arg1)
                }

                If (((Arg0 & 0x4000) == 0x4000))
                {
                    Notify (S0E, Arg1)
                }

                If (((Arg0 & 0x8000) == 0x8000))
                {
                    Notify (S0F, Arg1)
                }

                If (((Arg0 & 0x00010000) == 0x00010000))
                {
                    Notify (S10, Arg1)
                }

                If (((Arg0 & 0x00020000) == 0x00020000))
                {
                    Notify (S11, Arg1)
                }

                If (((Arg0 & 0x00040000) == 0x00040000))
                {
                    Notify (S12, Arg1)
                }

                If (((Arg0 & 0x00080000) == 0x00080000))
                {
                    Notify (S13, Arg1)
                }

                If (((Arg0 & 0x00100000) == 0x00100000))
                {
                    Notify (S14, Arg1)
                }

                If (((Arg0 & 0x00200000) == 0x00200000))
                {
                    Notify (S15, Arg1)
                }

                If (((Arg0 & 0x00400000) == 0x00400000))
                {
                    Notify (S16, Arg1)
                }

                If (((Arg0 & 0x00800000) == 0x00800000))
                {
                    Notify (S17, Arg1)
                }

                If (((Arg0 & 0x01000000) == 0x01000000))
                {
                    Notify (S18, Arg1)
                }

                If (((Arg0 & 0x02000000) == 0x02000000))
                {
                    Notify (S19, Arg1)
                }

                If (((Arg0 & 0x04000000) == 0x04000000))
                {
                    Notify (S1A, Arg1)
                }

                If (((Arg0 & 0x08000000) == 0x08000000))
                {
                    Notify (S1B, Arg1)
                }

                If (((Arg0 & 0x10000000) == 0x10000000))
                {
                    Notify (S1C, Arg1)
                }

                If (((Arg0 & 0x20000000) == 0x20000000))
                {
                    Notify (S1D, Arg1)
                }

                If (((Arg0 & 0x40000000) == 0x40000000))
                {
                    Notify (S1E, Arg1)
                }

                If (((Arg0 & 0x80000000) == 0x80000000))
                {
                    Notify (S1F, Arg1)
                }
            }

            Method (PCNT, 0, Serialized)
            {
                Acquire (\_SB.PHPR.BLCK, 0xFFFF)
                Local0 = \_SB.PHPR.PCIU
                Local1 = \_SB.PHPR.PCID
                Release (\_SB.PHPR.BLCK)
                DVNT (Local0, One)
                DVNT (Local1, 0x03)
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

