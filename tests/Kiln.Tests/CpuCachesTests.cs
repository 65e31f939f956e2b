using System.Runtime.Intrinsics.X86;
using Kiln.Kernels.Cpu;
using Xunit;

namespace Kiln.Tests;

/// <summary>The cache sizes the CPU kernels block for (<see cref="CpuCaches"/>).</summary>
public class CpuCachesTests
{
    [Fact]
    public void Cache_sizes_are_the_ones_sysfs_or_cpuid_lists_or_the_tuned_machine_s()
    {
        Assert.True(CpuCaches.L1Data > 0 && CpuCaches.L2 > 0 && CpuCaches.L3 > 0, $"sizes {CpuCaches.L1Data}, {CpuCaches.L2}, {CpuCaches.L3}");
        if (!CpuCaches.Measured)
        {
            Assert.Equal((32L << 10, 1L << 20, 32L << 20), (CpuCaches.L1Data, CpuCaches.L2, CpuCaches.L3));
            return;
        }
        if (!Directory.Exists("/sys/devices/system/cpu/cpu0/cache"))
        {
            Assert.True(X86Base.IsSupported);
            var c = CpuCaches.FromCpuid((leaf, sub) => X86Base.CpuId(leaf, sub), Environment.ProcessorCount);
            Assert.Equal((c.L1, c.L2, c.L3, c.Text), (CpuCaches.L1Data, CpuCaches.L2, CpuCaches.L3, CpuCaches.Describe()));
            return;
        }
        // Each size is the one its sysfs entry lists, in whichever unit that entry used.
        var listed = CpuCaches.Describe().Split(", ").ToDictionary(p => p.Split(' ')[0], p => p.Split(' ')[1]);
        foreach (var (name, bytes) in new[] { ("L1d", CpuCaches.L1Data), ("L2", CpuCaches.L2), ("L3", CpuCaches.L3) })
        {
            string size = listed[name];
            Assert.Contains(size, new[] { $"{bytes >> 10}K", $"{bytes >> 20}M", $"{bytes}" });
        }
    }

    // CPUID's vendor string in leaf 0's ebx, edx, ecx.
    static (int, int, int, int) Vendor(string v, int maxLeaf) =>
        (maxLeaf, BitConverter.ToInt32(System.Text.Encoding.ASCII.GetBytes(v), 0), BitConverter.ToInt32(System.Text.Encoding.ASCII.GetBytes(v), 8),
            BitConverter.ToInt32(System.Text.Encoding.ASCII.GetBytes(v), 4));

    // A deterministic-cache-parameters entry (leaf 4 / 0x8000001D) for a cache of the given geometry.
    static (int, int, int, int) Entry(int type, int level, int ways, int sets) => (type | level << 5, (ways - 1) << 22 | 63, sets - 1, 0);

    [Fact]
    public void Cpuid_leaf_4_gives_intel_s_caches()
    {
        // Sapphire Rapids: L1d 48 KiB (12 ways x 64 sets), L1i, L2 2 MiB (16 x 2048), L3 105 MiB (15 x 114688).
        var table = new Dictionary<(int, int), (int, int, int, int)>
        {
            [(0, 0)] = Vendor("GenuineIntel", 0x20),
            [(4, 0)] = Entry(1, 1, 12, 64), [(4, 1)] = Entry(2, 1, 8, 64), [(4, 2)] = Entry(3, 2, 16, 2048), [(4, 3)] = Entry(3, 3, 15, 114688),
        };
        var c = CpuCaches.FromCpuid((l, s) => table.GetValueOrDefault((l, s)), 56);
        Assert.Equal((48L << 10, 2L << 20, 105L << 20), (c.L1, c.L2, c.L3));
        Assert.Equal("L1d 48K, L2 2048K, L3 107520K (CPUID)", c.Text);
    }

    [Fact]
    public void Cpuid_on_a_small_amd_guest_falls_back_to_the_old_leaves_and_caps_the_host_s_l3()
    {
        // The 2-vCPU Zen 5 guest this was written on: 0x8000001D lists nothing; 0x80000005/6 give L1d 48 KiB, L2 1 MiB
        // and the host's 508 MiB of L3, of which the guest's cores reach 32 MiB.
        var table = new Dictionary<(int, int), (int, int, int, int)>
        {
            [(0, 0)] = Vendor("AuthenticAMD", 0x10),
            [(unchecked((int)0x80000000), 0)] = (unchecked((int)0x80000028), 0, 0, 0),
            [(unchecked((int)0x80000005), 0)] = (0, 0, 48 << 24 | 12 << 16 | 64, 0),
            [(unchecked((int)0x80000006), 0)] = (0, 0, 1024 << 16 | 64, 1016 << 18),
        };
        var c = CpuCaches.FromCpuid((l, s) => table.GetValueOrDefault((l, s)), 2);
        Assert.Equal((48L << 10, 1L << 20, 32L << 20), (c.L1, c.L2, c.L3));
        Assert.Equal("L1d 48K, L2 1024K, L3 32768K (CPUID; L3 reported 520192K, capped at 16M per logical CPU)", c.Text);
        // With enough CPUs the report stands.
        Assert.Equal(1016L << 19, CpuCaches.FromCpuid((l, s) => table.GetValueOrDefault((l, s)), 64).L3);
    }

    [Fact]
    public void Cpuid_of_another_vendor_lists_nothing()
    {
        var c = CpuCaches.FromCpuid((l, s) => l == 0 ? Vendor("HygonGenuine", 0x10) : default, 2);
        Assert.Equal((0L, 0L, 0L, ""), (c.L1, c.L2, c.L3, c.Text));
    }
}
