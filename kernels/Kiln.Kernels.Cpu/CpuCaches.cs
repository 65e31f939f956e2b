namespace Kiln.Kernels.Cpu;

/// <summary>
/// The data cache sizes the CPU kernels block for, read once from CPU 0's sysfs entries on Linux
/// (/sys/devices/system/cpu/cpu0/cache/indexN/{level, type, size}). A level that cannot be read takes the size of the
/// machine the blocking was tuned on (Zen 4: L1d 32 KiB, L2 1 MiB per core, L3 32 MiB), and <see cref="Measured"/> says so.
/// </summary>
public static class CpuCaches
{
    const long TunedL1 = 32 << 10, TunedL2 = 1 << 20, TunedL3 = 32 << 20;

    static readonly (long L1, long L2, long L3, bool Measured, string Text) Sizes = Read();

    /// <summary>Level-1 data cache bytes of one core.</summary>
    public static long L1Data => Sizes.L1;

    /// <summary>Level-2 cache bytes of one core.</summary>
    public static long L2 => Sizes.L2;

    /// <summary>Last-level (level-3) cache bytes as CPU 0 sees it (shared by its cores; a VM sees the host's whole L3).</summary>
    public static long L3 => Sizes.L3;

    /// <summary>Whether all three sizes were read from the machine rather than assumed.</summary>
    public static bool Measured => Sizes.Measured;

    /// <summary>The data and unified caches as sysfs names them, e.g. "L1d 48K, L2 2048K, L3 107520K"; empty when unknown.</summary>
    public static string Describe() => Sizes.Text;

    static (long, long, long, bool, string) Read()
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
        bool measured = l1 > 0 && l2 > 0 && l3 > 0;
        return (l1 > 0 ? l1 : TunedL1, l2 > 0 ? l2 : TunedL2, l3 > 0 ? l3 : TunedL3, measured, string.Join(", ", parts));
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
