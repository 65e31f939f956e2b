namespace Kiln.Methods.Generative;

/// <summary>Argument checks shared by the family's entries.</summary>
internal static class Args
{
    /// <summary>Throws, naming <paramref name="name"/> and the value, unless <paramref name="v"/> is positive and finite.</summary>
    public static void Positive(double v, string name, string op)
    {
        if (!(v > 0) || !double.IsFinite(v)) throw new ArgumentOutOfRangeException(name, v, $"{op}: {name} must be positive and finite");
    }
}
