using System.Diagnostics;
using Xunit;
using Xunit.Abstractions;

namespace Kiln.Distributed.Tests;

/// <summary>
/// Starts the <see cref="Driver"/> cases as two MPI ranks on this machine (over the loopback) and checks what each rank
/// reports. Skipped where mpirun is not installed (CI installs Open MPI).
/// </summary>
public sealed class TwoRankTests(ITestOutputHelper output)
{
    static string? MpiRun => (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':')
        .Select(d => Path.Combine(d, "mpirun")).FirstOrDefault(File.Exists);

    (int ExitCode, string Output, TimeSpan Took) Launch(string testCase, int timeoutSeconds = 240, params string[] mpirunOptions)
    {
        Skip.If(MpiRun is null, "mpirun is not installed (apt-get install openmpi-bin)");
        var driver = typeof(Driver).Assembly.Location;
        var psi = new ProcessStartInfo(MpiRun!)
        {
            RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
        };
        foreach (var a in (string[])["--allow-run-as-root", "--oversubscribe", .. mpirunOptions, "-np", "2", "dotnet", driver, testCase]) psi.ArgumentList.Add(a);
        psi.Environment["TERM"] = "dumb";
        var clock = Stopwatch.StartNew();
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(timeoutSeconds * 1000))
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"mpirun -np 2 {testCase} did not finish within {timeoutSeconds} s");
        }
        string text = stdout.Result + stderr.Result;
        output.WriteLine(text);
        return (p.ExitCode, text, clock.Elapsed);
    }

    void Passes(string testCase)
    {
        var (code, text, _) = Launch(testCase);
        Assert.True(code == 0, $"mpirun exited {code}:\n{text}");
        Assert.Contains($"rank 0 ok {testCase}", text);
        Assert.Contains($"rank 1 ok {testCase}", text);
    }

    [SkippableFact]
    public void CollectivesMatchTheFloat64Reference() => Passes("collectives");

    [SkippableFact]
    public void DataParallelGradientsEqualTheFullBatchAndReplicasStayBitwiseEqual() => Passes("ddp");

    [SkippableFact]
    public void TensorParallelDecoderMatchesOneProcess() => Passes("tensor-parallel");

    [SkippableFact]
    public void ADeadRankEndsTheJob()
    {
        // Open MPI's default: when a rank dies, mpirun stops the others.
        var (code, text, took) = Launch("fault", timeoutSeconds: 120);
        Assert.NotEqual(0, code);
        Assert.Contains("rank 1: dying before the all-reduce", text);
        Assert.True(took < TimeSpan.FromSeconds(60), $"the job took {took.TotalSeconds:F0} s to end");
        Assert.DoesNotContain("completed without its peer", text);
    }

    [SkippableFact]
    public void ASurvivorOfADeadRankFailsWithAClearErrorWithinTheTimeout()
    {
        // With --enable-recovery mpirun lets the survivor run on, as a stalled peer would: the watchdog (5 s in the
        // driver) must end the survivor's collective with an error that says what happened.
        var (_, text, took) = Launch("fault", 120, "--enable-recovery");
        Assert.Contains("rank 1: dying before the all-reduce", text);
        var m = System.Text.RegularExpressions.Regex.Match(text, @"rank 0 caught after (\d+\.\d) s: DistributedTimeoutException: mpi: all_reduce \(reduce-scatter\) on rank 0 of 2 did not complete within 5 s: a peer rank died or stalled");
        Assert.True(m.Success, text);
        // Not before the timeout; after it by no more than a starved poller's delay on a loaded machine.
        Assert.InRange(double.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture), 5.0, 30.0);
        Assert.True(took < TimeSpan.FromSeconds(60), $"the job took {took.TotalSeconds:F0} s to end");
    }
}
