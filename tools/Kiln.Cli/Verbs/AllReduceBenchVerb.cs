using System.CommandLine;
using System.Diagnostics;
using Kiln.Distributed;

namespace Kiln.Cli;

/// <summary>
/// `kiln allreduce-bench`: the all-reduce bandwidth of the MPI job it runs in (mpirun -np N kiln allreduce-bench), for
/// float32 buffers from 4 KiB to 64 MiB, as nccl-tests reports it: algorithm bandwidth (bytes / time) and bus bandwidth
/// (algorithm bandwidth x 2(N-1)/N, what each link of a ring carries).
/// </summary>
public static class AllReduceBenchVerb
{
    public static Command Build()
    {
        var cmd = new Command("allreduce-bench", "Measure the all-reduce time and bandwidth of an MPI job (run under mpirun -np N)");
        var max = new Option<int>("--max-mib") { Description = "Largest buffer in MiB (sizes go up by 4x from 4 KiB)", DefaultValueFactory = _ => 64 };
        var json = new Option<bool>("--json") { Description = "One JSON object per size on standard output" };
        cmd.Options.Add(max); cmd.Options.Add(json);
        cmd.SetAction(p =>
        {
            if (p.GetValue(max) < 1) throw new ArgumentException($"--max-mib: must be at least 1, got {p.GetValue(max)}");
            using var g = MpiProcessGroup.Init();
            int n = g.WorldSize;
            if (g.Rank == 0 && !p.GetValue(json))
                Console.Error.WriteLine($"all-reduce over {n} ranks ({g.Library}), float32, median of repeats\n{"bytes",12} {"time (us)",12} {"algbw (GB/s)",13} {"busbw (GB/s)",13}");
            for (long bytes = 4096; bytes <= (long)p.GetValue(max) << 20; bytes *= 4)
            {
                var buf = new float[bytes / 4];
                g.AllReduce(buf);
                // Enough repeats for about 0.2 s of the smallest sizes, at least 5 of the largest; all ranks agree on the count.
                int reps = (int)Math.Clamp(200_000_000 / bytes, 5, 200);
                var times = new double[reps];
                for (int i = 0; i < reps; i++)
                {
                    g.Barrier();
                    long t0 = Stopwatch.GetTimestamp();
                    g.AllReduce(buf);
                    times[i] = Stopwatch.GetElapsedTime(t0).TotalSeconds;
                }
                // The slowest rank sets a collective's time: take each repeat's maximum over ranks.
                var worst = new double[reps];
                for (int r = 0; r < n; r++)
                {
                    var mine = r == g.Rank ? times.ToArray() : new double[reps];
                    g.Broadcast(mine, r);
                    for (int i = 0; i < reps; i++) worst[i] = Math.Max(worst[i], mine[i]);
                }
                Array.Sort(worst);
                double t = worst[reps / 2], alg = bytes / t / 1e9, bus = alg * 2 * (n - 1) / n;
                if (g.Rank != 0) continue;
                if (p.GetValue(json)) Cli.JsonLine(new { ranks = n, bytes, seconds = t, algbw_gbs = alg, busbw_gbs = bus });
                else Console.Error.WriteLine($"{bytes,12} {t * 1e6,12:F1} {alg,13:F3} {bus,13:F3}");
            }
            return 0;
        });
        return cmd;
    }
}
