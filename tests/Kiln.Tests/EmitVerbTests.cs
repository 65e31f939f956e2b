using System.CommandLine;
using Kiln.Cli;
using Kiln.Gpu;
using Xunit;

namespace Kiln.Tests;

/// <summary>`kiln emit`: target selection, the files it writes, and its exit status (2 for bad usage, 1 for a failed or impossible compile).</summary>
public class EmitVerbTests
{
    static int RunKiln(params string[] args)
    {
        var root = new RootCommand("kiln");
        root.Subcommands.Add(EmitVerb.Build());
        return Cli.Cli.Run(root, args);
    }

    [Fact]
    public void Groups_expand_to_their_targets()
    {
        Assert.Equal(["amdgcn-gfx906", "amdgcn-gfx90a", "amdgcn-gfx940", "amdgcn-gfx1030", "amdgcn-gfx1100"], EmitVerb.ParseTargets("amdgcn", "sm_60..sm_90").Select(t => t.Name));
        Assert.Equal(["ptx-sm_70", "ptx-sm_75", "ptx-sm_80", "spir"], EmitVerb.ParseTargets("ptx,spir,ptx-sm_75", "sm_70..sm_80").Select(t => t.Name));
        Assert.Equal(CompileTarget.All, EmitVerb.ParseTargets("all", "sm_60..sm_90"));
    }

    [Fact]
    public void Bad_usage_exits_2()
    {
        Assert.Equal(Cli.Cli.BadUsage, RunKiln("emit"));
        Assert.Equal(Cli.Cli.BadUsage, RunKiln("emit", "--matrix", "--target", "spir"));
        Assert.Equal(Cli.Cli.BadUsage, RunKiln("emit", "--target", "gfx9000"));
        Assert.Equal(Cli.Cli.BadUsage, RunKiln("emit", "--target", "spir", "--kernel", "no-such-kernel"));
        Assert.Equal(Cli.Cli.BadUsage, RunKiln("emit", "--target", "spir", "--jobs", "0"));
    }

    [Fact]
    public void Writes_one_folder_per_target_and_exits_0_only_when_all_compile()
    {
        var dir = Directory.CreateTempSubdirectory("kiln-emit-");
        try
        {
            int code = RunKiln("emit", "--target", "nvptx64,ptx-sm_75", "--kernel", "reduce.rows.f32", "--out", dir.FullName);
            bool tools = CompileTarget.Get("nvptx64").Missing is null;
            Assert.Equal(tools ? 0 : Cli.Cli.Failed, code);
            Assert.True(File.Exists(Path.Combine(dir.FullName, "ptx-sm_75", "reduce.rows.f32.ptx")));
            Assert.Equal(tools, File.Exists(Path.Combine(dir.FullName, "nvptx64", "reduce.rows.f32.ptx")));
            Assert.Contains(".target sm_75", File.ReadAllText(Path.Combine(dir.FullName, "ptx-sm_75", "reduce.rows.f32.ptx")));
            // One target writes straight into the folder.
            Assert.Equal(0, RunKiln("emit", "--target", "opencl", "--kernel", "reduce.rows.f64", "--out", dir.FullName));
            Assert.True(File.Exists(Path.Combine(dir.FullName, "reduce.rows.f64.cl")));
        }
        finally { dir.Delete(recursive: true); }
    }
}
