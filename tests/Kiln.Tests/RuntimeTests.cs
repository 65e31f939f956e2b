using Kiln.Kernels.Cpu;
using Kiln.Tests.TestKit;
using Xunit;

namespace Kiln.Tests;

/// <summary>
/// <see cref="Runtime"/>: thread count (surplus workers retire, results do not change), spin time, the host cache's limit
/// and trim (issue #19 measured 1 GiB kept after the tensors were gone), device caches, and live-memory statistics. Serial:
/// the settings and counters are process-wide.
/// </summary>
[Collection(nameof(SerialCollection))]
public class RuntimeTests
{
    static void Eventually(Func<bool> condition, string what)
    {
        var until = DateTime.UtcNow.AddSeconds(5);
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < until, what);
            Thread.Sleep(5);
        }
    }

    [Fact]
    public void Fewer_threads_retire_workers_and_give_the_same_numbers()
    {
        int all = Environment.ProcessorCount;
        var g = new Generator(4);
        var a = Tensor.Rand(new Shape(300, 200), g);
        var b = Tensor.Rand(new Shape(200, 250), g);
        var full = a.MatMul(b).ToDoubleArray();
        try
        {
            Runtime.Threads = 1;
            Assert.Equal(1, WorkerTeam.Threads);
            Eventually(() => WorkerTeam.LiveWorkers == 0, $"workers still alive: {WorkerTeam.LiveWorkers}");
            Assert.Equal(full, a.MatMul(b).ToDoubleArray());
        }
        finally { Runtime.Threads = all; }
        Assert.Equal(all, Runtime.Threads);
        Assert.Equal(all - 1, WorkerTeam.LiveWorkers);
        Assert.Equal(full, a.MatMul(b).ToDoubleArray());
        Assert.Throws<ArgumentOutOfRangeException>(() => Runtime.Threads = 0);
        Assert.Throws<ArgumentOutOfRangeException>(() => Runtime.Threads = all + 1);
    }

    [Fact]
    public void Spin_time_is_settable_within_bounds()
    {
        var before = Runtime.SpinTime;
        try
        {
            Runtime.SpinTime = TimeSpan.Zero;
            Assert.Equal(TimeSpan.Zero, Runtime.SpinTime);
            var x = Tensor.Rand(new Shape(256, 256), new Generator(1));
            Assert.Equal(256, x.MatMul(x).Shape[0]);
        }
        finally { Runtime.SpinTime = before; }
        Assert.Equal(TimeSpan.FromMilliseconds(2), before);
        Assert.Throws<ArgumentOutOfRangeException>(() => Runtime.SpinTime = TimeSpan.FromMilliseconds(-1));
        Assert.Throws<ArgumentOutOfRangeException>(() => Runtime.SpinTime = TimeSpan.FromSeconds(2));
    }

    [Fact]
    public void The_host_cache_is_trimmed_on_request_and_bounded_by_its_limit()
    {
        long limit = Runtime.HostCacheLimitBytes;
        try
        {
            Runtime.Trim();
            // 40 tensors of 1..4 MB in distinct sizes: all of them fit under the default limit.
            foreach (int k in Enumerable.Range(0, 40)) Tensor.Zeros([(1 << 18) + 1024 * k]).Dispose();
            long cached = Runtime.MemoryOf(Device.Cpu).CachedBytes;
            Assert.True(cached >= 40L << 20, $"cached {cached} bytes");
            GC.Collect(); GC.WaitForPendingFinalizers(); GC.Collect();
            long heap = GC.GetTotalMemory(true);
            Runtime.Trim();
            Assert.Equal(0, Runtime.MemoryOf(Device.Cpu).CachedBytes);
            long after = GC.GetTotalMemory(true);
            Assert.True(heap - after >= cached * 9 / 10, $"heap {heap} -> {after} after trimming {cached} cached bytes");

            Runtime.HostCacheLimitBytes = 0;
            Tensor.Zeros([1 << 18]).Dispose();
            Assert.Equal(0, Runtime.MemoryOf(Device.Cpu).CachedBytes);
            Assert.Throws<ArgumentOutOfRangeException>(() => Runtime.HostCacheLimitBytes = -1);
        }
        finally { Runtime.HostCacheLimitBytes = limit; }
    }

    [Fact]
    public void Live_memory_counts_each_device_exactly()
    {
        GC.Collect(); GC.WaitForPendingFinalizers(); GC.Collect();
        foreach (var device in Devices.All)
        {
            var before = Runtime.MemoryOf(device);
            var t = Tensor.Zeros(new Shape(1000), DType.Float64, device);
            var during = Runtime.MemoryOf(device);
            Assert.Equal(before.LiveStorages + 1, during.LiveStorages);
            Assert.Equal(before.LiveBytes + 8000, during.LiveBytes);
            t.Dispose();
            var after = Runtime.MemoryOf(device);
            Assert.Equal(before.LiveStorages, after.LiveStorages);
            Assert.Equal(before.LiveBytes, after.LiveBytes);
        }
        Assert.Equal(Devices.All.Count, Runtime.Memory().Count);
    }

    [Fact]
    public void A_device_cache_is_trimmed_with_the_host_cache()
    {
        var gpu = Devices.All.FirstOrDefault(d => d.Kind == DeviceKind.IlgpuCpu);
        Assert.NotEqual(default, gpu);
        Tensor.Zeros(new Shape(4096), DType.Float32, gpu).Dispose();
        Assert.True(Runtime.MemoryOf(gpu).CachedBytes > 0);
        Runtime.Trim();
        Assert.Equal(0, Runtime.MemoryOf(gpu).CachedBytes);
    }
}
