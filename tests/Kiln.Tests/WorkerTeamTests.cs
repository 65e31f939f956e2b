using Kiln.Kernels.Cpu;
using Xunit;

namespace Kiln.Tests;

/// <summary>The persistent worker team behind the GEMM: every part runs once, errors reach the caller, nesting and
/// concurrent callers fall back to running inline.</summary>
public class WorkerTeamTests
{
    [Fact]
    public void Every_part_runs_exactly_once()
    {
        for (int round = 0; round < 200; round++)
        {
            int parts = 1 + round % 37;
            var hits = new int[parts];
            WorkerTeam.For(parts, i => Interlocked.Increment(ref hits[i]));
            Assert.All(hits, h => Assert.Equal(1, h));
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
}
