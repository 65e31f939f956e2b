using Kiln.Kernels.Cpu;
using Xunit;

namespace Kiln.Tests;

/// <summary>The persistent worker team behind the GEMM: every part runs once, with home blocks the caller starts on the
/// first block and a stalled thread's block is taken over, errors reach the caller, nesting and concurrent callers fall back to running
/// inline. Serial: another test's GEMM holding the team would run these calls
/// inline, where a part that waits for another never sees it start.</summary>
[Collection(nameof(SerialCollection))]
public class WorkerTeamTests
{
    [Fact]
    public void Every_part_runs_exactly_once()
    {
        for (int round = 0; round < 200; round++)
        {
            int parts = 1 + round % 37;
            var hits = new int[parts];
            WorkerTeam.For(parts, i => Interlocked.Increment(ref hits[i]), homeBlocks: round % 2 == 1);
            Assert.All(hits, h => Assert.Equal(1, h));
        }
    }

    [Fact]
    public void With_home_blocks_the_caller_starts_on_the_first_and_threads_take_over_a_stalled_one()
    {
        if (Environment.ProcessorCount < 2) return;   // no workers: every part runs inline, in order
        int caller = Environment.CurrentManagedThreadId;
        for (int round = 0; round < 20; round++)
        {
            // Four parts a block at least. The first part a worker starts stalls until every other part has run, which
            // needs the rest of its block taken by other threads; without that it times out.
            int parts = 4 * Environment.ProcessorCount, done = 0, stalled = 0, first = -1;
            bool finished = true;
            WorkerTeam.For(parts, i =>
            {
                if (Environment.CurrentManagedThreadId == caller) Interlocked.CompareExchange(ref first, i, -1);
                else if (Interlocked.Exchange(ref stalled, 1) == 0)
                {
                    var wait = System.Diagnostics.Stopwatch.StartNew();
                    while (Volatile.Read(ref done) < parts - 1 && wait.Elapsed < TimeSpan.FromSeconds(10)) Thread.Yield();
                    finished = Volatile.Read(ref done) == parts - 1;
                }
                Interlocked.Increment(ref done);
            }, homeBlocks: true);
            Assert.Equal(0, first);
            Assert.True(finished, $"round {round}: a stalled worker's block was not taken over within 10 s");
            Assert.Equal(parts, done);
        }
    }

    [Fact]
    public void Exceptions_reach_the_caller_and_the_team_keeps_working()
    {
        var e = Assert.Throws<AggregateException>(() => WorkerTeam.For(8, i => { if (i == 5) throw new InvalidOperationException("part 5"); }));
        Assert.Equal("part 5", e.InnerException!.Message);
        int sum = 0;
        WorkerTeam.For(8, i => Interlocked.Add(ref sum, i));
        Assert.Equal(28, sum);
    }

    [Fact]
    public void Nested_and_concurrent_calls_complete()
    {
        int total = 0;
        Parallel.For(0, 8, _ => WorkerTeam.For(4, i => WorkerTeam.For(3, j => Interlocked.Increment(ref total))));
        Assert.Equal(8 * 4 * 3, total);
    }

    [Fact]
    public void A_worker_joins_whether_it_is_polling_or_asleep()
    {
        if (Environment.ProcessorCount < 2) return;   // no workers: every part runs inline
        // Part 0 waits for part 1 to start, which only a worker can do while the caller is inside part 0: a lost
        // wake-up shows as a timeout here rather than a hang. Pauses before the calls leave the worker polling
        // (shorter than SpinBeforeSleep) or blocked (longer).
        foreach (var pause in new[] { TimeSpan.Zero, WorkerTeam.SpinBeforeSleep / 4, WorkerTeam.SpinBeforeSleep * 3 })
            for (int round = 0; round < 20; round++)
            {
                Thread.Sleep(pause);
                using var started = new ManualResetEventSlim();
                bool joined = false;
                WorkerTeam.For(2, i =>
                {
                    if (i == 1) started.Set();
                    else joined = started.Wait(TimeSpan.FromSeconds(10));
                });
                Assert.True(joined, $"after a pause of {pause.TotalMilliseconds} ms, round {round}: no worker took part 1 within 10 s");
            }
    }
}
