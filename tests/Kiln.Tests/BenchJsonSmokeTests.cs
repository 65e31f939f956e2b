using Kiln.Tests.TestKit;
using System.Text.Json;
using Kiln.Cli;
using Xunit;

namespace Kiln.Tests;

/// <summary>`kiln bench --json`'s contract on a small workload, Kiln only (CI has no peers): one line per workload with "peer": null.</summary>
[Collection(nameof(SerialCollection))]
public class BenchJsonSmokeTests
{
    [Fact]
    public void Kiln_bench_json_prints_one_contract_line_per_workload_with_a_null_peer_when_peers_are_skipped()
    {
        var j = CliRun.JsonObject(BenchVerb.Build(), ["bench", "--json", "--no-peer", "--rounds", "1", "sgemm_256"]);
        foreach (var key in new[] { "workload", "unit", "kiln_rate", "peer", "peer_version", "peer_rate", "ratio", "cpu" }) Assert.True(j.TryGetProperty(key, out _), key);
        Assert.Equal("sgemm_256", j.GetProperty("workload").GetString());
        Assert.Equal("GFLOP/s", j.GetProperty("unit").GetString());
        Assert.True(j.GetProperty("kiln_rate").GetDouble() > 0);
        Assert.Equal(JsonValueKind.Null, j.GetProperty("peer").ValueKind);
        Assert.Equal(JsonValueKind.Null, j.GetProperty("ratio").ValueKind);
        Assert.Contains(j.GetProperty("skipped").EnumerateArray(), s => s.GetString()!.StartsWith("libtorch: not asked for"));
        var cpu = j.GetProperty("cpu");
        Assert.Equal(Environment.ProcessorCount, cpu.GetProperty("logical_cpus").GetInt32());
        Assert.Equal(Kiln.Runtime.Threads, cpu.GetProperty("threads").GetInt32());
        Assert.False(string.IsNullOrEmpty(cpu.GetProperty("model").GetString()));
        Assert.Equal(JsonValueKind.Array, cpu.GetProperty("flags").ValueKind);
    }
}
