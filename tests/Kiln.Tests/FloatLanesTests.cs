using Kiln.Kernels.Cpu;
using Xunit;

namespace Kiln.Tests;

/// <summary>The lane exp that softmax, attention's tiles, SiLU and the GELUs share, against float64's exp.</summary>
public class FloatLanesTests
{
    // Every 997th float pattern in [-87, 88] (about 640 thousand), the interval's ends, and the points where the
    // reduction's k changes (x = (j + 1/2) ln 2, either side).
    static float[] Points()
    {
        var xs = new List<float> { -87f, 88f, 0f, -0f, 1f, -1f };
        for (uint bits = 0; bits < uint.MaxValue - 997; bits += 997)
        {
            float x = BitConverter.UInt32BitsToSingle(bits);
            if (x >= -87f && x <= 88f) xs.Add(x);
        }
        for (int j = -126; j <= 126; j++)
        {
            float h = (float)((j + 0.5) * Math.Log(2));
            if (h < -87f || h > 88f) continue;
            xs.Add(h); xs.Add(MathF.BitDecrement(h)); xs.Add(MathF.BitIncrement(h));
        }
        return xs.ToArray();
    }

    static double Ulps(float got, double want)
    {
        float w = (float)want;
        return Math.Abs(got - want) / (MathF.BitIncrement(MathF.Abs(w)) - MathF.Abs(w));
    }

    static void Check<TV>(float[] xs) where TV : struct, IFloatLanes<TV>
    {
        var y = new float[TV.Count];
        double worst = 0;
        float at = 0;
        for (int i = 0; i + TV.Count <= xs.Length; i += TV.Count)
        {
            FloatLanes.Exp(TV.Load(xs, i)).Store(y, 0);
            for (int l = 0; l < TV.Count; l++)
            {
                double u = Ulps(y[l], Math.Exp(xs[i + l]));
                if (u > worst) (worst, at) = (u, xs[i + l]);
            }
        }
        Assert.True(worst <= 1.0, $"exp({at:R}) is {worst:F3} ulp off (budget 1 ulp)");
    }

    [Fact]
    public void Exp_is_within_one_ulp_at_every_width_here()
    {
        var xs = Points();
        Assert.True(xs.Length > 600_000);
        if (FloatLanes.Has512) Check<Lanes512F>(xs);
        if (FloatLanes.Has256) Check<Lanes256F>(xs);
    }

    readonly struct Identity : ILaneOp
    {
        public static TV Apply<TV>(TV x) where TV : struct, IFloatLanes<TV> => x;
    }

    [Fact]
    public void A_lane_map_into_a_shorter_output_throws_naming_both_lengths()
    {
        var e = Assert.Throws<ArgumentException>(() => FloatLanes.TryMap<Identity>(new float[40], new float[39]));
        Assert.Equal("y", e.ParamName);
        Assert.Contains("39", e.Message);
        Assert.Contains("40", e.Message);
    }
}
