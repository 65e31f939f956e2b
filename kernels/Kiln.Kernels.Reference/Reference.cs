namespace Kiln.Kernels;

/// <summary>
/// The scalar float64 reference for every Kiln kernel. Plain loops, no SIMD, no threads: obviously correct, and the
/// oracle that property tests and <c>kiln validate</c> compare every backend against.
/// </summary>
public static partial class Reference
{
}
