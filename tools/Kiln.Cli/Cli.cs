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
    public static IAnsiConsole Err { get; } = CreateConsole(Console.Error, Interactive);

    /// <summary>The width of a console that is not a terminal: wide enough that no table wraps a cell.</summary>
    public const int RedirectedWidth = 4096;

    /// <summary>
    /// A console writing to <paramref name="writer"/>: colour and live widgets on an interactive terminal; otherwise
    /// plain text <see cref="RedirectedWidth"/> wide, so tables in a log or a pipe keep every row on one line instead of
    /// wrapping cells (which would split numbers) at a default 80 columns.
    /// </summary>
    public static IAnsiConsole CreateConsole(TextWriter writer, bool interactive)
    {
        var console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Out = new AnsiConsoleOutput(writer),
            Ansi = interactive ? AnsiSupport.Detect : AnsiSupport.No,
            ColorSystem = interactive ? ColorSystemSupport.Detect : ColorSystemSupport.NoColors,
            Interactive = interactive ? InteractionSupport.Detect : InteractionSupport.No,
        });
        if (!interactive) console.Profile.Width = RedirectedWidth;
        return console;
    }

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
        // The default handler would print a stack trace and exit 1; every error ends with one line instead.
        try { return parse.Invoke(new InvocationConfiguration { EnableDefaultExceptionHandler = false }); }
        catch (Exception ex)
        {
            ex = Unwrap(ex);
            if (Environment.GetEnvironmentVariable("KILN_TRACE") == "1") Console.Error.WriteLine(ex);
            var (code, message) = Describe(ex);
            Console.Error.WriteLine($"kiln: {OneLine(message)}");
            return code;
        }
    }

    /// <summary>True for errors the user's arguments or files cause (exit <see cref="BadUsage"/>): bad values,
    /// missing, corrupt or unwritable files.</summary>
    public static bool IsBadInput(Exception ex) => ex is ArgumentException or IOException or UnauthorizedAccessException
        or InvalidDataException or NotSupportedException or FormatException or System.Text.Json.JsonException;

    static Exception Unwrap(Exception ex)
    {
        while (ex is System.Reflection.TargetInvocationException or AggregateException && ex.InnerException is { } inner) ex = inner;
        return ex;
    }

    static (int Code, string Message) Describe(Exception ex)
    {
        if (!IsBadInput(ex)) return (Failed, $"{ex.GetType().Name}: {ex.Message} (set KILN_TRACE=1 for the stack trace)");
        // ArgumentException appends " (Parameter 'x')", which names a C# parameter, not an option.
        string message = ex is ArgumentException { ParamName: { } p } ? ex.Message.Replace($" (Parameter '{p}')", "") : ex.Message;
        return (BadUsage, message);
    }

    /// <summary>The message on one line, cut at <see cref="MaxMessage"/> characters so a message that quotes its input
    /// (a parser echoing a file) cannot flood the terminal.</summary>
    public static string OneLine(string message)
    {
        var line = string.Join(" ", message.Split(['\r', '\n'], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
        return line.Length <= MaxMessage ? line : line[..(MaxMessage - 3)] + "...";
    }

    /// <summary>The longest error line <see cref="Run"/> prints.</summary>
    public const int MaxMessage = 400;

    /// <summary>
    /// Checks that <paramref name="path"/> (the value of <paramref name="option"/>) can be written as a file before a
    /// verb spends time computing it: not a folder, and in a folder that exists.
    /// </summary>
    /// <exception cref="ArgumentException">The path names a folder, or its folder does not exist.</exception>
    public static string OutputFile(string path, string option)
    {
        if (Directory.Exists(path)) throw new ArgumentException($"{option} {path}: is a folder; name a file");
        string dir = Path.GetDirectoryName(Path.GetFullPath(path))!;
        if (!Directory.Exists(dir)) throw new ArgumentException($"{option} {path}: folder {dir} does not exist");
        return path;
    }

    /// <summary>Creates the folder <paramref name="path"/> named by <paramref name="option"/> (if needed) and checks it can be written.</summary>
    /// <exception cref="ArgumentException">The path names a file, or the folder cannot be created or written.</exception>
    public static string OutputFolder(string path, string option)
    {
        if (File.Exists(path)) throw new ArgumentException($"{option} {path}: is a file; name a folder");
        try
        {
            Directory.CreateDirectory(path);
            string probe = Path.Combine(path, $".kiln-write-test-{Environment.ProcessId}");
            File.WriteAllBytes(probe, []);
            File.Delete(probe);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ArgumentException($"{option} {path}: cannot write there ({e.Message})", e);
        }
        return path;
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

    /// <summary>
    /// The PNG an experiment verb writes: the <c>--plot</c> value (checked with <see cref="OutputFile"/>), else
    /// <paramref name="fallback"/> unless <c>--json</c> was given (JSON runs write no plot unless asked); null for none.
    /// </summary>
    public static string? PlotPath(ParseResult parse, Option<string?> plot, Option<bool> json, string? fallback) =>
        parse.GetValue(plot) is { } given ? OutputFile(given, "--plot") : parse.GetValue(json) ? null : fallback;

    /// <summary>Draws the plot into <paramref name="png"/> (when not null) and names the file on standard error.</summary>
    public static void SavePlot(string? png, Action<string> draw)
    {
        if (png is null) return;
        draw(png);
        Err.WriteLine($"plot: {Path.GetFullPath(png)}");
    }

    /// <summary>
    /// Writes PNG panels of <paramref name="width"/> × <paramref name="height"/> pixels (ScottPlot's <c>GetImageBytes</c>)
    /// side by side into one PNG at <paramref name="path"/>, <paramref name="columns"/> to a row (all in one row by default).
    /// </summary>
    public static void SavePanels(string path, IReadOnlyList<byte[]> panels, int width, int height, int? columns = null)
    {
        int cols = Math.Max(1, Math.Min(columns ?? panels.Count, panels.Count)), rows = Math.Max(1, (panels.Count + cols - 1) / cols);
        using var surface = SkiaSharp.SKSurface.Create(new SkiaSharp.SKImageInfo(cols * width, rows * height));
        surface.Canvas.Clear(SkiaSharp.SKColors.White);
        for (int i = 0; i < panels.Count; i++)
        {
            using var img = SkiaSharp.SKImage.FromEncodedData(panels[i]);
            surface.Canvas.DrawImage(img, i % cols * width, i / cols * height);
        }
        using var data = surface.Snapshot().Encode(SkiaSharp.SKEncodedImageFormat.Png, 100);
        using var file = File.Create(path);
        data.SaveTo(file);
    }

    /// <summary>Checks that the integer value of <paramref name="option"/> is positive.</summary>
    /// <exception cref="ArgumentException">It is zero or negative.</exception>
    public static int Positive(int value, string option) =>
        value > 0 ? value : throw new ArgumentException($"{option}: {value} is not a positive integer");

    /// <summary>Checks that the value of <paramref name="option"/> is positive and finite.</summary>
    /// <exception cref="ArgumentException">It is not.</exception>
    public static double PositiveFinite(double value, string option) =>
        value > 0 && double.IsFinite(value) ? value : throw new ArgumentException($"{option}: {value} is not positive and finite");

    /// <summary>Writes one JSON object as a line on standard output.</summary>
    public static void JsonLine(object value) => Console.Out.WriteLine(System.Text.Json.JsonSerializer.Serialize(value));
}
