namespace Kiln.Methods.PolicyOptimization;

/// <summary>
/// A generated task with a verifiable answer: prompts are short byte strings, the reward is exact match of the
/// completion (up to the first newline) with the answer. Small enough for the tiny byte-level decoder to learn on a
/// CPU in minutes, and each has a different skill, so fine-tunes on different tasks give distinct task vectors.
/// </summary>
public abstract class GeneratedTask
{
    /// <summary>The task's name on the command line.</summary>
    public abstract string Name { get; }
    /// <summary>A one-line description.</summary>
    public abstract string Description { get; }
    /// <summary>Longest answer in bytes, without the terminating newline (the sampling budget is this plus one).</summary>
    public abstract int MaxAnswerLength { get; }
    /// <summary>Draws one (prompt, answer) pair; the prompt ends where the completion starts, the answer has no newline.</summary>
    public abstract (string Prompt, string Answer) Sample(Random random);

    /// <summary>
    /// A supervised fine-tuning stream: <paramref name="count"/> lines "prompt + answer + newline" as UTF-8 byte tokens (the
    /// byte-level vocabulary of the tiny decoder), for <c>LmTrainer.Train</c> with <c>InitialWeights</c>.
    /// </summary>
    public int[] Corpus(Random random, int count)
    {
        ArgumentNullException.ThrowIfNull(random);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(count);
        var text = new System.Text.StringBuilder();
        for (int i = 0; i < count; i++) { var (prompt, answer) = Sample(random); text.Append(prompt).Append(answer).Append('\n'); }
        return [.. System.Text.Encoding.UTF8.GetBytes(text.ToString()).Select(b => (int)b)];
    }

    /// <summary>1 when the completion up to its first newline equals <paramref name="answer"/>, else 0.</summary>
    public static double ExactMatch(string answer, string completion)
    {
        ArgumentNullException.ThrowIfNull(answer); ArgumentNullException.ThrowIfNull(completion);
        int end = completion.IndexOf('\n');
        return (end < 0 ? completion : completion[..end]) == answer ? 1 : 0;
    }

    /// <summary>The built-in tasks: add, reverse, sort, count.</summary>
    public static IReadOnlyList<GeneratedTask> All { get; } = [new Addition(), new Reversal(), new DigitSort(), new LetterCount()];

    /// <summary>The built-in task named <paramref name="name"/>.</summary>
    /// <exception cref="ArgumentException">No task has that name; the message lists the names.</exception>
    public static GeneratedTask Get(string name) =>
        All.FirstOrDefault(t => t.Name.Equals(name, StringComparison.OrdinalIgnoreCase))
        ?? throw new ArgumentException($"unknown task '{name}'; known: {string.Join(", ", All.Select(t => t.Name))}", nameof(name));

    static string Letters(Random random, int min, int max)
    {
        var chars = new char[random.Next(min, max + 1)];
        for (int i = 0; i < chars.Length; i++) chars[i] = (char)('a' + random.Next(26));
        return new string(chars);
    }

    sealed class Addition : GeneratedTask
    {
        public override string Name => "add";
        public override string Description => "sum of two numbers below 50: \"23+19=\" → \"42\"";
        public override int MaxAnswerLength => 2;
        public override (string, string) Sample(Random random)
        {
            int a = random.Next(50), b = random.Next(50);
            return ($"{a}+{b}=", (a + b).ToString(System.Globalization.CultureInfo.InvariantCulture));
        }
    }

    sealed class Reversal : GeneratedTask
    {
        public override string Name => "reverse";
        public override string Description => "a 3-5 letter string reversed: \"rev abcd:\" → \"dcba\"";
        public override int MaxAnswerLength => 5;
        public override (string, string) Sample(Random random)
        {
            var s = Letters(random, 3, 5);
            var r = s.ToCharArray(); Array.Reverse(r);
            return ($"rev {s}:", new string(r));
        }
    }

    sealed class DigitSort : GeneratedTask
    {
        public override string Name => "sort";
        public override string Description => "4 digits in ascending order: \"sort 3917:\" → \"1379\"";
        public override int MaxAnswerLength => 4;
        public override (string, string) Sample(Random random)
        {
            var d = new char[4];
            for (int i = 0; i < d.Length; i++) d[i] = (char)('0' + random.Next(10));
            var s = new string(d); Array.Sort(d);
            return ($"sort {s}:", new string(d));
        }
    }

    sealed class LetterCount : GeneratedTask
    {
        public override string Name => "count";
        public override string Description => "how many times 'a' occurs in 4-8 letters from {a,b,c}: \"cnt abca:\" → \"2\"";
        public override int MaxAnswerLength => 1;
        public override (string, string) Sample(Random random)
        {
            var chars = new char[random.Next(4, 9)];
            for (int i = 0; i < chars.Length; i++) chars[i] = (char)('a' + random.Next(3));
            var s = new string(chars);
            return ($"cnt {s}:", s.Count(c => c == 'a').ToString(System.Globalization.CultureInfo.InvariantCulture));
        }
    }
}
