using System.Runtime.Intrinsics;

namespace Kiln.Bench;

/// <summary>The single-precision peak of one core, and Kiln's SGEMM on one core, both per CPU-second of the measuring thread.</summary>
public static class PeakProbe
{
    /// <summary>
    /// Floating-point operations per one-core SGEMM measurement, Kiln's and the peer's (2e10): about 0.2 s of CPU time,
    /// long enough that a few milliseconds of the VM's slow episodes do not move the ratio (a 30 ms window read
    /// 0.86-1.13 at n = 256).
    /// </summary>
    public const double OneCoreFlops = 2e10;

    /// <summary>
    /// One core's single-precision peak in GFLOP per CPU-second: a register-only loop of 12 independent Vector512 (or
    /// Vector256) FMA chains, enough to cover FMA latency times throughput, with no memory traffic, timed by the
    /// thread's CPU time (<see cref="Timing.ThreadCpuSeconds"/>) so other load on the machine does not lower it:
    /// iterations x 12 x lanes x 2 / CPU seconds, best of 3. The machine's peak is this times the number of cores.
    /// </summary>
    /// <exception cref="InvalidOperationException">The FMA loop produced NaN.</exception>
    public static double MeasureCoreGflops() => BestOf3(20_000_000, 1, Timing.ThreadCpuSeconds, loop => loop(0));

    /// <summary>
    /// The peak of every core at once in GFLOP/s of wall-clock time: <see cref="MeasureCoreGflops"/>'s FMA loop on each
    /// thread of the worker team together, total flops over the wall time of the slowest, best of 3. This is the
    /// yardstick of a multi-threaded row, timed by the wall clock on the same cores: what the host gives the guest's
    /// cores while all of them are busy is in both. On a 2-vCPU Zen 5 guest it read 410-423 GFLOP/s where one core's
    /// CPU-time probe read 211-213 (two threads of the loop each ran 212-215 per CPU-second, so the 1-3% is the host's
    /// share of the wall clock, which a two-thread GEMM pays too).
    /// </summary>
    /// <exception cref="InvalidOperationException">The FMA loop produced NaN.</exception>
    public static double MeasureCoresGflops()
    {
        int parts = Math.Max(1, Kernels.Cpu.WorkerTeam.Threads);
        return BestOf3(8_000_000, parts, () => System.Diagnostics.Stopwatch.GetTimestamp() / (double)System.Diagnostics.Stopwatch.Frequency,
            loop => Kernels.Cpu.WorkerTeam.For(parts, loop));
    }

    // GFLOP/s of the FMA loop of `iters` iterations run on `parts` threads by `run` (given the loop of part p), best
    // of 3, timed by `clock` (seconds).
    static double BestOf3(long iters, int parts, Func<double> clock, Action<Action<int>> run)
    {
        int lanes = Vector512.IsHardwareAccelerated ? Vector512<float>.Count : Vector256<float>.Count;
        var sinks = new float[parts];
        double best = 0;
        for (int rep = 0; rep < 3; rep++)
        {
            double t0 = clock();
            run(p => sinks[p] = Vector512.IsHardwareAccelerated ? Fma512(iters) : Fma256(iters));
            double seconds = clock() - t0;
            if (sinks.Any(float.IsNaN)) throw new InvalidOperationException("bench: the FMA loop diverged");
            best = Math.Max(best, parts * iters * 12.0 * lanes * 2 / seconds / 1e9);
        }
        return best;
    }

    /// <summary>
    /// Kiln's SGEMM (<c>Gemm.Run(threads: 1)</c> on random [m, k] x [k, n] floats) in GFLOP per CPU-second of the
    /// calling thread over about <see cref="OneCoreFlops"/> flops: the kernel's per-core efficiency, comparable with
    /// OpenBLAS on one thread (<see cref="PeerRunner.OneCoreGflops"/>) however busy the machine is.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">An extent of <paramref name="shape"/> is less than 1.</exception>
    public static double KilnOneCoreGflops(GemmShape shape)
    {
        var (m, n, k) = shape;
        if (m < 1 || n < 1 || k < 1) throw new ArgumentOutOfRangeException(nameof(shape), $"bench: GEMM extents must be at least 1, not {m} x {n} x {k}");
        var r = new Random(1);
        var a = Enumerable.Range(0, m * k).Select(_ => (float)r.NextDouble()).ToArray();
        var b = Enumerable.Range(0, k * n).Select(_ => (float)r.NextDouble()).ToArray();
        var c = new float[m * n];
        void Go() => Kernels.Cpu.Gemm.Run(m, n, k, 1f, a, 0, k, 1, b, 0, n, 1, 0f, c, 0, n, threads: 1);
        int reps = Math.Max(5, (int)(OneCoreFlops / shape.Flops));
        for (int i = 0; i < 3; i++) Go();
        double t0 = Timing.ThreadCpuSeconds();
        for (int i = 0; i < reps; i++) Go();
        return shape.Flops * reps / (Timing.ThreadCpuSeconds() - t0) / 1e9;
    }

    static float Fma512(long iters)
    {
        var x = Vector512.Create(0.999f); var y = Vector512.Create(1e-7f);
        Vector512<float> a0 = x, a1 = x, a2 = x, a3 = x, a4 = x, a5 = x, a6 = x, a7 = x, a8 = x, a9 = x, a10 = x, a11 = x;
        for (long i = 0; i < iters; i++)
        {
            a0 = Vector512.FusedMultiplyAdd(a0, x, y); a1 = Vector512.FusedMultiplyAdd(a1, x, y); a2 = Vector512.FusedMultiplyAdd(a2, x, y);
            a3 = Vector512.FusedMultiplyAdd(a3, x, y); a4 = Vector512.FusedMultiplyAdd(a4, x, y); a5 = Vector512.FusedMultiplyAdd(a5, x, y);
            a6 = Vector512.FusedMultiplyAdd(a6, x, y); a7 = Vector512.FusedMultiplyAdd(a7, x, y); a8 = Vector512.FusedMultiplyAdd(a8, x, y);
            a9 = Vector512.FusedMultiplyAdd(a9, x, y); a10 = Vector512.FusedMultiplyAdd(a10, x, y); a11 = Vector512.FusedMultiplyAdd(a11, x, y);
        }
        return Vector512.Sum(a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11);
    }

    static float Fma256(long iters)
    {
        var x = Vector256.Create(0.999f); var y = Vector256.Create(1e-7f);
        Vector256<float> a0 = x, a1 = x, a2 = x, a3 = x, a4 = x, a5 = x, a6 = x, a7 = x, a8 = x, a9 = x, a10 = x, a11 = x;
        for (long i = 0; i < iters; i++)
        {
            a0 = Vector256.FusedMultiplyAdd(a0, x, y); a1 = Vector256.FusedMultiplyAdd(a1, x, y); a2 = Vector256.FusedMultiplyAdd(a2, x, y);
            a3 = Vector256.FusedMultiplyAdd(a3, x, y); a4 = Vector256.FusedMultiplyAdd(a4, x, y); a5 = Vector256.FusedMultiplyAdd(a5, x, y);
            a6 = Vector256.FusedMultiplyAdd(a6, x, y); a7 = Vector256.FusedMultiplyAdd(a7, x, y); a8 = Vector256.FusedMultiplyAdd(a8, x, y);
            a9 = Vector256.FusedMultiplyAdd(a9, x, y); a10 = Vector256.FusedMultiplyAdd(a10, x, y); a11 = Vector256.FusedMultiplyAdd(a11, x, y);
        }
        return Vector256.Sum(a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11);
    }

    /// <summary>
    /// The machine's memory bandwidth in GB/s, read + write: a copy of <see cref="CopyBytes"/> of float32 into as many
    /// again, split over the worker team, counting both streams, median of <see cref="Timing.MedianSeconds"/>. The
    /// copy stores the ordinary way, as a plain copy loop or the peer's copy does (each destination line is read before
    /// it is written), so it is the same yardstick in every run: Kiln's own copy, which streams its stores past the
    /// last-level cache since 801fd25, counts 1.2-1.35x more (this copy 37-43 GB/s, that one 49-54, interleaved, on a
    /// Zen 4 guest).
    /// </summary>
    public static double MeasureCopyGBps()
    {
        var (x, y) = CopyBuffers.Value;
        int n = x.Length, parts = Math.Max(1, Kernels.Cpu.WorkerTeam.Threads);
        void Copy() => Kernels.Cpu.WorkerTeam.For(parts, p =>
        {
            int s = (int)((long)n * p / parts), e = (int)((long)n * (p + 1) / parts), i = s, w = System.Numerics.Vector<float>.Count;
            Span<float> src = x, dst = y;
            for (; i + w <= e; i += w) new System.Numerics.Vector<float>(src[i..]).CopyTo(dst[i..]);
            for (; i < e; i++) dst[i] = src[i];
        });
        return 2.0 * n * sizeof(float) / Timing.MedianSeconds(Copy) / 1e9;
    }

    /// <summary>
    /// Bytes of each of the copy's two buffers: eight times the last-level cache (as <see cref="Kernels.Cpu.CpuCaches"/>
    /// sizes it), at least 256 MiB, at most 1 GiB. A guest's share of its host's cache is not what it reports: on a
    /// 2-vCPU Zen 5 guest (L3 capped at 32 MiB; CPUID reports the host's 508 MiB) two cores copied 64 MiB at 96 GB/s
    /// and read it at 95, but 256 MiB at 66 and 67 and 1 GiB at 63 and 63, so a 64 MiB copy measured the neighbours'
    /// use of the host's cache as much as the memory (43-97 GB/s between rows of one run).
    /// </summary>
    public static long CopyBytes { get; } = Math.Clamp(8 * Kernels.Cpu.CpuCaches.L3, 256L << 20, 1L << 30);

    // Allocated and touched once: a fresh 2 x 256 MiB per probe would fault in its pages every time.
    static readonly Lazy<(float[] X, float[] Y)> CopyBuffers = new(() =>
    {
        var (x, y) = (GC.AllocateUninitializedArray<float>((int)(CopyBytes / sizeof(float))), GC.AllocateUninitializedArray<float>((int)(CopyBytes / sizeof(float))));
        x.AsSpan().Fill(1f);
        y.AsSpan().Clear();
        return (x, y);
    });
}
