using Kiln.Methods.Smoothing;
using Kiln.Ops;

namespace Kiln.Methods;

/// <summary>The ops the method library defines on Kiln's extension API (each registered in <see cref="OpCatalog"/> when first touched).</summary>
public static class MethodOps
{
    /// <summary>Every op of the method library, registered.</summary>
    public static IReadOnlyList<OpDefinition> All { get; } = [StumpSum.PdfOp, StumpSum.TailOp];
}
