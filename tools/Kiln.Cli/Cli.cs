using System.CommandLine;
using Kiln.Gpu;
using Spectre.Console;

namespace Kiln.Cli;

/// <summary>Shared command-line conventions: exit codes, plain output under CI or redirection, JSON lines.</summary>
public static class Cli
{
    /// <summary>Exit status for a failed check.</summary>
    public const int Failed = 1;
    /// <summary>Exit status for bad usage.</summary>
    public const int BadUsage = 2;

    /// <summary>True when progress bars and colour are wanted: an interactive terminal and not CI.</summary>
    public static bool Interactive => !Console.IsErrorRedirected && Environment.GetEnvironmentVariable("CI") is null or "" or "false";

    /// <summary>Console for human-readable output: standard error, so standard output stays clean for --json.</summary>
    public static IAnsiConsole Err { get; } = AnsiConsole.Create(new AnsiConsoleSettings
    {
        Out = new AnsiConsoleOutput(Console.Error),
        Ansi = Interactive ? AnsiSupport.Detect : AnsiSupport.No,
        ColorSystem = Interactive ? ColorSystemSupport.Detect : ColorSystemSupport.NoColors,
        Interactive = Interactive ? InteractionSupport.Detect : InteractionSupport.No,
    });

    /// <summary>Parses and runs; argument errors exit with <see cref="BadUsage"/>.</summary>
    public static int Run(RootCommand root, string[] args)
    {
        var parse = root.Parse(args);
        if (parse.Errors.Count > 0)
        {
            foreach (var e in parse.Errors) Console.Error.WriteLine($"kiln: {e.Message}");
            Console.Error.WriteLine("run 'kiln --help' (or 'kiln <verb> --help') for usage");
            return BadUsage;
        }
        // The default handler would print a stack trace and exit 1; bad input must exit 2 with one line.
        try { return parse.Invoke(new InvocationConfiguration { EnableDefaultExceptionHandler = false }); }
        catch (Exception ex) when (ex is ArgumentException or FileNotFoundException or DirectoryNotFoundException or InvalidDataException or NotSupportedException)
        {
            // ArgumentException appends " (Parameter 'x')", which names a C# parameter, not an option.
            string message = ex is ArgumentException { ParamName: { } p } ? ex.Message.Replace($" (Parameter '{p}')", "") : ex.Message;
            Console.Error.WriteLine($"kiln: {message}");
            return BadUsage;
        }
    }

    /// <summary>The shared <c>--device SPEC</c> option of the verbs that compute (default cpu); open it with <see cref="OpenDevice"/>.</summary>
    public static Option<string> DeviceOption(string? description = null) => new("--device")
    {
        Description = description ?? $"Device to run on: {KilnGpu.DeviceForms}",
        DefaultValueFactory = _ => "cpu",
    };

    /// <summary>
    /// Opens the device named by <paramref name="option"/>; dispose the lease when the verb is done. A malformed spec is an
    /// <see cref="ArgumentException"/> and an absent device a <see cref="NotSupportedException"/>, both prefixed with the
    /// option, so <see cref="Run"/> prints them as one line.
    /// </summary>
    public static DeviceLease OpenDevice(ParseResult parse, Option<string> option)
    {
        string spec = parse.GetValue(option)!;
        try { return KilnGpu.Open(spec); }
        catch (ArgumentException e) { throw new ArgumentException($"{option.Name}: {e.Message.Replace(" (Parameter 'spec')", "")}", e); }
        catch (NotSupportedException e) { throw new NotSupportedException($"{option.Name}: {e.Message}", e); }
    }

    /// <summary>Runs <paramref name="work"/> with a progress bar on a terminal, or plain start/end lines otherwise.</summary>
    public static T Progress<T>(string label, int total, Func<Action<int>, T> work)
    {
        if (!Interactive)
        {
            Console.Error.WriteLine($"{label}...");
            return work(_ => { });
        }
        T result = default!;
        Err.Progress().AutoClear(true).Start(ctx =>
        {
            var task = ctx.AddTask(label, maxValue: Math.Max(total, 1));
            result = work(done => task.Value = done);
        });
        return result;
    }

    /// <summary>Writes one JSON object as a line on standard output.</summary>
    public static void JsonLine(object value) => Console.Out.WriteLine(System.Text.Json.JsonSerializer.Serialize(value));
}
