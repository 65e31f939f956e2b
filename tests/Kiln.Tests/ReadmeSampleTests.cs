using Xunit;

namespace Kiln.Tests;

/// <summary>The README's user-defined op is the package sample that CI builds and runs against the packed packages (tests/PackageSample/check.sh).</summary>
public class ReadmeSampleTests
{
    static string Root()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Engine.sln"))) dir = dir.Parent;
        return dir?.FullName ?? throw new DirectoryNotFoundException("no Engine.sln above " + AppContext.BaseDirectory);
    }

    [Fact]
    public void Readme_shows_the_package_sample_as_written()
    {
        string root = Root();
        string readme = File.ReadAllText(Path.Combine(root, "README.md")).ReplaceLineEndings("\n");
        string sample = File.ReadAllText(Path.Combine(root, "tests", "PackageSample", "Program.cs")).ReplaceLineEndings("\n");
        Assert.Contains("```csharp\n" + sample.TrimEnd('\n') + "\n```", readme);
    }
}
