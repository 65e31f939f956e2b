using System.Runtime.Intrinsics.X86;

namespace Kiln.Kernels.Cpu;

/// <summary>
/// The data cache sizes the CPU kernels block for, read once: from CPU 0's sysfs entries on Linux
/// (/sys/devices/system/cpu/cpu0/cache/indexN/{level, type, size}), else (a VM or container without them) from the
/// x86 CPUID instruction (<see cref="FromCpuid"/>). A level neither lists takes the size of the machine the blocking was
/// tuned on (Zen 4: L1d 32 KiB, L2 1 MiB per core, L3 32 MiB), and <see cref="Measured"/> says so.
/// </summary>
public static class CpuCaches
{
    const long TunedL1 = 32 << 10, TunedL2 = 1 << 20, TunedL3 = 32 << 20;

    /// <summary>
    /// The most last-level cache per logical CPU that a CPUID report is believed for. Hypervisors report the host's whole
    /// L3 to a small guest (a 2-vCPU Zen 5 VM: 508 MiB, where its cores reach one CCD's 32 MiB and reads slow to memory
    /// speed past 64 MiB); no shipping x86 part has more than 12 MiB per core (Zen 4/5 X3D: 96 MiB per 8 cores). Blocking
    /// for a cache smaller than the real one costs a few percent, for one larger thrashes it.
    /// </summary>
    const long L3PerCpuCap = 16 << 20;

    static readonly (long L1, long L2, long L3, bool Measured, string Text) Sizes = Read();

    /// <summary>Level-1 data cache bytes of one core.</summary>
    public static long L1Data => Sizes.L1;

    /// <summary>Level-2 cache bytes of one core.</summary>
    public static long L2 => Sizes.L2;

    /// <summary>Last-level (level-3) cache bytes as CPU 0 sees it (shared by its cores; a VM may see the host's whole L3).</summary>
    public static long L3 => Sizes.L3;

    /// <summary>Whether all three sizes were read from the machine (sysfs or CPUID) rather than assumed.</summary>
    public static bool Measured => Sizes.Measured;

    /// <summary>
    /// The data and unified caches and where they were read, e.g. "L1d 48K, L2 2048K, L3 107520K" (sysfs's names) or
    /// "L1d 48K, L2 1024K, L3 32768K (CPUID; L3 reported 520192K, capped at 16M per logical CPU)"; empty when unknown.
    /// </summary>
    public static string Describe() => Sizes.Text;

    static (long, long, long, bool, string) Read()
    {
        var (l1, l2, l3, text) = FromSysfs();
        if (l1 == 0 || l2 == 0 || l3 == 0)
        {
            var c = X86Base.IsSupported ? FromCpuid((leaf, sub) => X86Base.CpuId(leaf, sub), Environment.ProcessorCount) : (0, 0, 0, "");
            if (c.L1 > 0 || c.L2 > 0 || c.L3 > 0)
            {
                // A level sysfs lists stays sysfs's.
                if (l1 == 0) l1 = c.L1;
                if (l2 == 0) l2 = c.L2;
                if (l3 == 0) l3 = c.L3;
                text = c.Text;
            }
        }
        bool measured = l1 > 0 && l2 > 0 && l3 > 0;
        return (l1 > 0 ? l1 : TunedL1, l2 > 0 ? l2 : TunedL2, l3 > 0 ? l3 : TunedL3, measured, text);
    }

    static (long L1, long L2, long L3, string Text) FromSysfs()
    {
        long l1 = 0, l2 = 0, l3 = 0;
        var parts = new List<string>();
        try
        {
            var dir = new DirectoryInfo("/sys/devices/system/cpu/cpu0/cache");
            if (dir.Exists)
                foreach (var d in dir.GetDirectories("index*").OrderBy(d => d.Name, StringComparer.Ordinal))
                {
                    string Get(string f) => File.ReadAllText(Path.Combine(d.FullName, f)).Trim();
                    string type = Get("type"), level = Get("level"), size = Get("size");
                    if (type == "Instruction") continue;
                    parts.Add($"L{level}{(type == "Data" ? "d" : "")} {size}");
                    long bytes = Bytes(size);
                    switch (level)
                    {
                        case "1": l1 = bytes; break;
                        case "2": l2 = bytes; break;
                        case "3": l3 = bytes; break;
                    }
                }
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException) { }
        return (l1, l2, l3, string.Join(", ", parts));
    }

    /// <summary>
    /// Data cache sizes from CPUID, given as <paramref name="cpuid"/>(leaf, subleaf) = (eax, ebx, ecx, edx): the
    /// deterministic cache parameters (leaf 4 on Intel, 0x8000001D on AMD: ways x partitions x line x sets per level),
    /// else AMD's older 0x80000005 (L1d) and 0x80000006 (L2, L3). The L3 is capped at 16 MiB per logical CPU of the
    /// machine (<paramref name="logicalCpus"/>), since a VM's CPUID may report the host's whole L3. 0 for a level not found.
    /// </summary>
    public static (long L1, long L2, long L3, string Text) FromCpuid(Func<int, int, (int Eax, int Ebx, int Ecx, int Edx)> cpuid, int logicalCpus)
    {
        var (_, vb, vc, vd) = cpuid(0, 0);
        bool amd = vb == 0x68747541 && vd == 0x69746E65 && vc == 0x444D4163;   // "AuthenticAMD"
        bool intel = vb == 0x756E6547 && vd == 0x49656E69 && vc == 0x6C65746E; // "GenuineIntel"
        if (!amd && !intel) return (0, 0, 0, "");
        long l1 = 0, l2 = 0, l3 = 0;
        int maxExt = cpuid(unchecked((int)0x80000000), 0).Eax;
        int leaf = intel ? 4 : unchecked((int)0x8000001D);
        if (intel ? cpuid(0, 0).Eax >= 4 : (uint)maxExt >= 0x8000001D)
            for (int sub = 0; sub < 16; sub++)
            {
                var (a, b, c, _) = cpuid(leaf, sub);
                int type = a & 31, level = (a >> 5) & 7;
                if (type == 0) break;
                if (type == 2) continue; // instruction cache
                long bytes = (long)(((uint)b >> 22) + 1) * (((b >> 12) & 0x3FF) + 1) * ((b & 0xFFF) + 1) * ((long)(uint)c + 1);
                switch (level)
                {
                    case 1: l1 = bytes; break;
                    case 2: l2 = bytes; break;
                    case 3: l3 = bytes; break;
                }
            }
        if (amd && (uint)maxExt >= 0x80000006)
        {
            if (l1 == 0) l1 = (long)((uint)cpuid(unchecked((int)0x80000005), 0).Ecx >> 24) << 10;
            var (_, _, c6, d6) = cpuid(unchecked((int)0x80000006), 0);
            if (l2 == 0) l2 = (long)((uint)c6 >> 16) << 10;
            if (l3 == 0) l3 = (long)((uint)d6 >> 18) << 19;
        }
        long cap = L3PerCpuCap * Math.Max(1, logicalCpus), reported = l3;
        if (l3 > cap) l3 = cap;
        var parts = new List<string>();
        if (l1 > 0) parts.Add($"L1d {l1 >> 10}K");
        if (l2 > 0) parts.Add($"L2 {l2 >> 10}K");
        if (l3 > 0) parts.Add($"L3 {l3 >> 10}K");
        string text = parts.Count == 0 ? "" : string.Join(", ", parts) +
            (reported > l3 ? $" (CPUID; L3 reported {reported >> 10}K, capped at {L3PerCpuCap >> 20}M per logical CPU)" : " (CPUID)");
        return (l1, l2, l3, text);
    }

    // "32K", "1024K", "32768K", "2M": bytes, or 0 when not a size.
    static long Bytes(string size)
    {
        if (size.Length == 0) return 0;
        long unit = char.ToUpperInvariant(size[^1]) switch { 'K' => 1L << 10, 'M' => 1L << 20, 'G' => 1L << 30, _ => 1 };
        string digits = unit == 1 ? size : size[..^1];
        return long.TryParse(digits, out long n) && n > 0 ? n * unit : 0;
    }
}
