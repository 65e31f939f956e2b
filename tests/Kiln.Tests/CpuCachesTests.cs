using Kiln.Kernels.Cpu;
using Xunit;

namespace Kiln.Tests;

/// <summary>The cache sizes the CPU kernels block for (<see cref="CpuCaches"/>).</summary>
public class CpuCachesTests
{
    [Fact]
    public void Cache_sizes_are_the_ones_sysfs_lists_or_the_tuned_machine_s()
    {
        Assert.True(CpuCaches.L1Data > 0 && CpuCaches.L2 > 0 && CpuCaches.L3 > 0, $"sizes {CpuCaches.L1Data}, {CpuCaches.L2}, {CpuCaches.L3}");
        if (!CpuCaches.Measured)
        {
            Assert.Equal((32L << 10, 1L << 20, 32L << 20), (CpuCaches.L1Data, CpuCaches.L2, CpuCaches.L3));
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
}
