using System.Runtime.CompilerServices;

namespace Kiln.Kernels.Cpu;

/// <summary>
/// Vectorized float32 erf and exact GELU. erf: |x| &lt;= 1: erf x = x P(x^2), P of degree 7; 1 &lt; |x| &lt; 4:
/// erf x = 1 - e^(-x^2) Q(1/x), Q of degree 10 fitting erfc(x) e^(x^2); |x| &gt;= 4: +-1 (erfc 4 &lt; 2^-25).
/// The coefficients are weighted least-squares fits on Chebyshev nodes (relative fit error 4e-11 and 3e-9), so the
/// result is limited by float32 rounding. GELU x Phi(x) takes Phi from its own pieces (Chebyshev interpolants): on
/// |x| &lt;= 3 one polynomial without division or exponential, beyond it Phi(-|x|) = e^(-x^2/2) R(|x|) directly, so the
/// lower tail is accurate in relative terms. Measured against <see cref="Erf64.Gelu"/> over 10^7 points on [-16, 20]
/// (both lane widths): relative error at most 3.0e-7 for x &lt;= -3 (down to the subnormal results near -14), 2.7e-7 on
/// [-1, 1], 1.3e-7 for x &gt;= 1; on [-3, -1], where Phi(x) is a difference from 1/2, 1.2e-7 absolute (the previous
/// kernel, which took Phi = (1 + erf) / 2, had 1.0e-7 there and lost every digit below x = -5.7).
/// Reference: <see cref="Reference.Erf"/>.
/// </summary>
public static class Erf
{
    const float A0 = 1.1283791670800527f, A1 = -0.3761263855257886f, A2 = 0.11283783440656243f, A3 = -0.026865475337044715f,
        A4 = 0.005221138204329145f, A5 = -0.0008485431748754347f, A6 = 0.00011274685357091167f, A7 = -9.689588222575832e-06f;
    const float B0 = 2.5962322825608757e-05f, B1 = 0.5637192056904435f, B2 = 0.0030156843666735195f, B3 = -0.285187602620868f,
        B4 = -0.06926381664567799f, B5 = 0.8994746922755077f, B6 = -1.5240357090158956f, B7 = 1.4239852285142613f,
        B8 = -0.8105906818524571f, B9 = 0.2646572868211446f, B10 = -0.03821667486274084f;

    /// <summary>erf of one float.</summary>
    public static float Scalar(float x)
    {
        float a = MathF.Abs(x);
        if (float.IsNaN(x)) return x;
        if (a <= 1f)
        {
            float t = x * x;
            return x * (A0 + t * (A1 + t * (A2 + t * (A3 + t * (A4 + t * (A5 + t * (A6 + t * A7)))))));
        }
        if (a >= 4f) return MathF.CopySign(1f, x);
        float u = 1f / a;
        float q = B0 + u * (B1 + u * (B2 + u * (B3 + u * (B4 + u * (B5 + u * (B6 + u * (B7 + u * (B8 + u * (B9 + u * B10)))))))));
        return MathF.CopySign(1f - MathF.Exp(-a * a) * q, x);
    }

    /// <summary>y = erf(x) over spans (y may equal x).</summary>
    public static void Run(ReadOnlySpan<float> x, Span<float> y)
    {
        if (!FloatLanes.TryMap<ErfOp>(x, y))
            for (int i = 0; i < x.Length; i++) y[i] = Scalar(x[i]);
    }

    /// <summary>y = x Phi(x) = x (1 + erf(x / sqrt 2)) / 2, the exact GELU, over spans (y may equal x).</summary>
    public static void Gelu(ReadOnlySpan<float> x, Span<float> y)
    {
        // Without vector lanes, the float64 kernel: as accurate through the lower tail as the lanes.
        if (!FloatLanes.TryMap<GeluOp>(x, y))
            for (int i = 0; i < x.Length; i++) y[i] = (float)Erf64.Gelu(x[i]);
    }

    readonly struct ErfOp : ILaneOp
    {
        public static bool Pairs => true;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static TV Apply<TV>(TV x) where TV : struct, IFloatLanes<TV> => Lanes(x);
    }

    // Phi(x) - 1/2 = x G(x^2) on |x| <= 3, G a polynomial of degree 9 in s = 2 x^2 / 9 - 1 (Chebyshev interpolant of
    // (Phi(x) - 1/2) / x; fit error 1.2e-8 in Phi): ten fused multiply-adds per vector and no division. A normal input
    // leaves that range in one element of 370, so the exact tail below runs for a few vectors in a hundred.
    const float G0 = 0.2277131668039715f, G1 = -0.092832484719081954f, G2 = 0.045972244300161412f, G3 = -0.020571019373005501f,
        G4 = 0.0080214733201824564f, G5 = -0.0027296710116144966f, G6 = 0.0008179692086914724f, G7 = -0.00021700976224779046f,
        G8 = 5.2162960137668399e-05f, G9 = -1.260455701994219e-05f, G10 = 2.4738602239050453e-06f;
    // R(a) = erfcx(a / sqrt 2) / 2 on a in [3, 15.25] (Phi(-a) = e^(-a^2/2) R(a)), degree 7 in s = 14.08 / (2 + a) - 1.816,
    // an affine map of t = 2 / (2 + a) onto [-1, 1] (relative fit error 6.3e-9).
    const float R0 = 0.067418040012283714f, R1 = 0.047375723382089348f, R2 = 0.0064071641432605379f,
        R3 = 0.00036369205370234865f, R4 = -4.4434671897450317e-05f, R5 = -7.1311389208093823e-06f,
        R6 = 7.4676045394572732e-07f, R7 = 1.4802615534714736e-07f;

    readonly struct GeluOp : ILaneOp
    {
        public static bool HasRare => true;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static TV Apply<TV>(TV x) where TV : struct, IFloatLanes<TV>
        {
            var y = Common(x, out bool far);
            return far ? TV.Select(TV.Greater(TV.Abs(x), TV.Splat(3f)), GeluTail(x), y) : y;
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static TV Common<TV>(TV x, out bool rare) where TV : struct, IFloatLanes<TV>
        {
            var u = x * x;
            var s = TV.Fma(TV.Fma(-x, x, u), TV.Splat(-2f / 9), TV.Fma(u, TV.Splat(2f / 9), TV.Splat(-1f)));
            var g = TV.Fma(TV.Splat(G10), s, TV.Splat(G9));
            g = TV.Fma(g, s, TV.Splat(G8));
            g = TV.Fma(g, s, TV.Splat(G7)); g = TV.Fma(g, s, TV.Splat(G6)); g = TV.Fma(g, s, TV.Splat(G5)); g = TV.Fma(g, s, TV.Splat(G4));
            g = TV.Fma(g, s, TV.Splat(G3)); g = TV.Fma(g, s, TV.Splat(G2)); g = TV.Fma(g, s, TV.Splat(G1)); g = TV.Fma(g, s, TV.Splat(G0));
            // x^2 > 9 is |x| > 3 but for x^2 rounding to 9 (where the polynomial still holds); NaN fails the
            // comparison and flows through the product.
            rare = TV.AnyGreater(u, TV.Splat(9f));
            return x * TV.Fma(x, g, TV.Splat(0.5f));
        }
    }

    // x Phi(x) for |x| > 3 with Phi(-|x|) = e^(-x^2/2) R(|x|) taken directly, so the lower tail keeps its relative
    // accuracy (no 1 - erf cancellation); Phi(x) = 1 - Phi(-x) above. x^2 = h + l exactly (fused multiply-add), and the
    // exponential runs scaled by 2^64 so x Phi(x) rounds once even where it is subnormal (down to x = -14.1).
    // Out of line (a few vectors in a hundred take it), fully optimized from its first call.
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    static TV GeluTail<TV>(TV x) where TV : struct, IFloatLanes<TV>
    {
        var a = TV.Min(TV.Abs(x), TV.Splat(15.25f));
        var s = TV.Splat(14.081632653061224f) / (TV.Splat(2f) + a) - TV.Splat(1.8163265306122447f);
        var q = TV.Fma(TV.Splat(R7), s, TV.Splat(R6));
        q = TV.Fma(q, s, TV.Splat(R5)); q = TV.Fma(q, s, TV.Splat(R4)); q = TV.Fma(q, s, TV.Splat(R3));
        q = TV.Fma(q, s, TV.Splat(R2)); q = TV.Fma(q, s, TV.Splat(R1)); q = TV.Fma(q, s, TV.Splat(R0));
        var h = a * a;
        var e = FloatLanes.ExpSplit(h * TV.Splat(-0.5f), TV.Fma(-a, a, h) * TV.Splat(0.5f), 64) * q;
        const float Unscale = 5.421010862427522e-20f; // 2^-64
        var lower = TV.Select(TV.Less(x, TV.Splat(-15.25f)), x * TV.Splat(0f), x * e * TV.Splat(Unscale));
        return TV.Select(TV.Less(x, TV.Splat(0f)), lower, x * TV.Fma(e, TV.Splat(-Unscale), TV.Splat(1f)));
    }

    // Both branches on every lane, then a select: e^(-a^2) from FloatLanes.Exp on a clamped to 4, 1/a by one division.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static TV Lanes<TV>(TV x) where TV : struct, IFloatLanes<TV>
    {
        var a = TV.Abs(x);
        var t = x * x;
        var p = TV.Fma(TV.Splat(A7), t, TV.Splat(A6));
        p = TV.Fma(p, t, TV.Splat(A5)); p = TV.Fma(p, t, TV.Splat(A4)); p = TV.Fma(p, t, TV.Splat(A3));
        p = TV.Fma(p, t, TV.Splat(A2)); p = TV.Fma(p, t, TV.Splat(A1)); p = TV.Fma(p, t, TV.Splat(A0));
        var small = x * p;
        var ac = TV.Min(TV.Max(a, TV.Splat(1f)), TV.Splat(4f));
        var u = TV.Splat(1f) / ac;
        var q = TV.Fma(TV.Splat(B10), u, TV.Splat(B9));
        q = TV.Fma(q, u, TV.Splat(B8)); q = TV.Fma(q, u, TV.Splat(B7)); q = TV.Fma(q, u, TV.Splat(B6)); q = TV.Fma(q, u, TV.Splat(B5));
        q = TV.Fma(q, u, TV.Splat(B4)); q = TV.Fma(q, u, TV.Splat(B3)); q = TV.Fma(q, u, TV.Splat(B2)); q = TV.Fma(q, u, TV.Splat(B1));
        q = TV.Fma(q, u, TV.Splat(B0));
        var large = TV.Fma(-FloatLanes.Exp(-(ac * ac)), q, TV.Splat(1f));
        large = TV.Select(TV.Less(a, TV.Splat(4f)), large, TV.Splat(1f));
        // Copy the sign of x onto the large-|x| branch; NaN flows through the small branch.
        var signed = TV.Select(TV.Less(x, TV.Splat(0f)), -large, large);
        return TV.Select(TV.Greater(a, TV.Splat(1f)), signed, small);
    }
}

/// <summary>
/// Float64 erf, erfc and the normal CDF to about 1 ulp: Chebyshev interpolants of erf(sqrt t)/sqrt t on t in [0, 1/4],
/// of erfcx(x) = e^(x^2) erfc(x) on [0.5, 6] in six pieces, and of sqrt(pi) x erfcx(x) in u = 1/x beyond 6 (coefficients
/// from 40-digit values at Chebyshev points), evaluated by Clenshaw's recurrence; e^(-x^2) is computed from x^2 split
/// exactly by a fused multiply-add. Reference (the series and continued fraction): <see cref="Reference.Erf"/>,
/// <see cref="Reference.NormalCdf"/>.
/// </summary>
public static class Erf64
{
    static readonly double[] Small = [1.083882205490613, -0.04367779108737525, 0.000807111829413323, -1.1913179519267608e-05, 1.4402787336435505e-07, -1.4677155812935239e-09, 1.2902438379165675e-11, -9.96364120108203e-14, 6.847113121980833e-16, -2.1833550810909948e-18, 7.361205241544327e-19, -2.1967532707612496e-18, 2.1058214464884155e-19, 7.699637076127905e-18];
    static readonly double[] X0_5 = [0.5142540300448141, -0.09353436157631646, 0.007349543567965961, -0.0005170287683170972, 3.327489181040078e-05, -1.9877609419287775e-06, 1.1137198399088675e-07, -5.898649607698372e-09, 2.9712990159356077e-10, -1.4304889214291886e-11, 6.608611885806404e-13, -2.9391298982164954e-14, 1.26233537169699e-15, -4.6457907708035195e-17, 3.7002772874205825e-18, -1.200937651684138e-19, 4.755677795209493e-18, -1.894823823425692e-18, -5.218572021664224e-19, -2.8526669191874454e-19, -1.849804654174785e-18, -2.3865137141238766e-18, 7.477570855538038e-18];
    static readonly double[] X1 = [0.3711927943420716, -0.052799551940465685, 0.0033807623615918895, -0.00019896338415156388, 1.0911979120988554e-05, -5.632372066179972e-07, 2.7564656101463438e-08, -1.2864435787542678e-09, 5.751894343782776e-11, -2.473184413993662e-12, 1.0258764567374013e-13, -4.113780453385556e-15, 1.601950582629221e-16, -2.6145786363631382e-18, 1.217109443796179e-18, 7.383010538210771e-20, 2.66121030619598e-18, -1.0038110456612464e-18, -3.328544914923754e-19, -1.990470877500854e-19, -1.0951265496779065e-18, -1.2594881534289964e-18, 4.201850608763398e-18];
    static readonly double[] X1_5 = [0.28672723893640484, -0.03300680108481147, 0.001759147788684076, -8.788195718624722e-05, 4.151610275612093e-06, -1.8669721328984827e-07, 8.033784461038263e-09, -3.321836138521761e-10, 1.3243525702205052e-11, -5.105605106061251e-13, 1.9079122223177815e-14, -6.910805014865468e-16, 2.4590729379164228e-17, 1.323957362823404e-18, 6.977721952383454e-19, 9.861468026484103e-20, 1.6544954599875428e-18, -5.975370161632638e-19, -2.252733687236275e-19, -1.430671756048345e-19, -7.070972681553338e-19, -7.472470413495177e-19, 2.617428058842807e-18];
    static readonly double[] X2 = [0.21398248255623223, -0.037938404099999566, 0.0031959178113380353, -0.0002573666707889984, 1.9905838950217765e-05, -1.4842771854350766e-06, 1.0702889548350368e-07, -7.482824222853665e-09, 5.083548493981964e-10, -3.362257203919799e-11, 2.1685835246439077e-12, -1.3659324856010462e-13, 8.413188866869058e-15, -5.048664840907364e-16, 3.0596450172173735e-17, -1.778288393360263e-18, 2.036225705329992e-18, -7.937849163263276e-19, -1.9887846705237407e-19, -1.0921595751444953e-19, -7.324980972046852e-19, -9.936091683477854e-19, 3.0368651360149475e-18];
    static readonly double[] X3 = [0.15664177324548129, -0.02091546173436561, 0.0013533062741154644, -8.50732056314654e-05, 5.2067028371352285e-06, -3.1080131383008636e-07, 1.8122880274514456e-08, -1.0336821984615834e-09, 5.774109530617665e-11, -3.162184091816296e-12, 1.6994572424246028e-13, -8.969883978305988e-15, 4.655012754832298e-16, -2.23960123272615e-17, 1.5867300981817532e-18, -2.784580098864686e-20, 1.0581316556597622e-18, -3.992419526326503e-19, -1.3080478602719444e-19, -7.896003255907687e-20, -4.321564024436461e-19, -5.007716606394514e-19, 1.6645154004142423e-18];
    static readonly double[] X4 = [0.11277819743166245, -0.021913497155272348, 0.0020915397845687493, -0.00019628624819123023, 1.8126654238718765e-05, -1.6483628246565691e-06, 1.4769699327736602e-07, -1.3047490253040543e-08, 1.1369753471845507e-09, -9.77818039799127e-11, 8.303212268607616e-12, -6.964640849066834e-13, 5.772820342897452e-14, -4.72874423778372e-15, 3.8360016141216844e-16, -3.0774102741090086e-17, 3.565323835740255e-18, -6.688051220969526e-19, -8.630102326989303e-20, -5.574766025763562e-20, -4.036747738638664e-19, -6.027974196820864e-19, 1.7590448849070186e-18];
    static readonly double[] Tail = [0.9949415317372343, -0.006705576277012168, -0.0016183806297843193, 3.231039303653522e-05, 3.4123756339676235e-06, -1.8062607295017098e-07, -8.876838521784156e-09, 1.1329735183629112e-09, 9.08709962685475e-12, -7.38626907431333e-12, 2.545222187034178e-13, 4.421921897032112e-14, -4.341330101135411e-15, -1.5927402224327531e-16, 5.125787647837929e-17, -1.3934487223921886e-18, -3.6553264207779995e-19, 4.169669781812053e-19, 6.5862820421656965e-19];

    static double Clenshaw(double[] c, double t)
    {
        double b1 = 0, b2 = 0, t2 = 2 * t;
        for (int j = c.Length - 1; j >= 1; j--) { double b0 = Math.FusedMultiplyAdd(t2, b1, c[j] - b2); b2 = b1; b1 = b0; }
        return Math.FusedMultiplyAdd(t, b1, c[0] - b2);
    }

    static double OnInterval(double[] c, double a, double b, double x) => Clenshaw(c, (2 * x - (a + b)) / (b - a));

    /// <summary>e^(x^2) erfc(x) for x &gt;= 0.5.</summary>
    static double Erfcx(double x) => x switch
    {
        < 1 => OnInterval(X0_5, 0.5, 1, x),
        < 1.5 => OnInterval(X1, 1, 1.5, x),
        < 2 => OnInterval(X1_5, 1.5, 2, x),
        < 3 => OnInterval(X2, 2, 3, x),
        < 4 => OnInterval(X3, 3, 4, x),
        < 6 => OnInterval(X4, 4, 6, x),
        _ => OnInterval(Tail, 0, 1.0 / 6, 1 / x) / (x * 1.7724538509055160273),
    };

    /// <summary>e^(-x^2) with x^2 split into hi + lo exactly, so the rounding of x^2 does not cost 2 x^2 ulps.</summary>
    static double ExpMinusSquare(double x)
    {
        double hi = x * x, lo = Math.FusedMultiplyAdd(x, x, -hi);
        return Math.Exp(-hi) * (1 - lo);
    }

    /// <summary>erfc(x).</summary>
    public static double Erfc(double x)
    {
        if (double.IsNaN(x)) return x;
        double a = Math.Abs(x);
        if (a < 0.5) return 1 - ErfSmall(x);
        if (a > 27.3) return x > 0 ? 0 : 2;   // erfc 27.3 underflows
        double r = ExpMinusSquare(a) * Erfcx(a);
        return x > 0 ? r : 2 - r;
    }

    static double ErfSmall(double x) => x * OnInterval(Small, 0, 0.25, x * x);

    /// <summary>erf(x).</summary>
    public static double Erf(double x)
    {
        if (double.IsNaN(x)) return x;
        double a = Math.Abs(x);
        if (a < 0.5) return ErfSmall(x);
        if (a > 6) return Math.CopySign(1.0, x);
        return Math.CopySign(1 - ExpMinusSquare(a) * Erfcx(a), x);
    }

    /// <summary>
    /// Phi(x) = erfc(-x / sqrt 2) / 2, accurate in relative terms through the lower tail: there e^(-x^2 / 2) is taken from x
    /// itself, since the rounding of z = x / sqrt 2 would cost 2 z^2 ulps through e^(-z^2).
    /// </summary>
    public static double NormalCdf(double x)
    {
        double z = -x * 0.70710678118654752440;
        if (!(z >= 0.5) || z > 27.3) return 0.5 * Erfc(z);
        double hi = x * x, lo = Math.FusedMultiplyAdd(x, x, -hi);
        return 0.5 * (Math.Exp(-0.5 * hi) * (1 - 0.5 * lo)) * Erfcx(z);
    }

    /// <summary>The lower-tail normal quantile (q &lt;= 1/2): Acklam's estimate and two Halley steps on Phi(x) = q.</summary>
    static double LowerQuantile(double q)
    {
        double x = Reference.AcklamIcdf(q);
        if (q < 1e-290)
        {
            // Far out Phi(x) is subnormal and the density underflows: Newton on ln Phi(x) = ln q instead, with
            // Phi(x) = e^(-x^2/2) erfcx(-x / sqrt 2) / 2 and (ln Phi)' = 2 / (sqrt(2 pi) erfcx(-x / sqrt 2)).
            for (int i = 0; i < 3; i++)
            {
                double ex = Erfcx(-x * 0.7071067811865476);
                x -= (Math.Log(0.5 * ex) - x * x / 2 - Math.Log(q)) * 1.2533141373155003 * ex;
            }
            return x;
        }
        for (int i = 0; i < 2; i++)
        {
            double e = NormalCdf(x) - q;
            double u = e * 2.5066282746310002 * Math.Exp(x * x / 2);
            x -= u / (1 + x * u / 2);
        }
        return x;
    }

    /// <summary>Phi^-1(p), through the lower tail on both sides (1 - p is exact for p &gt;= 1/2).</summary>
    public static double NormalIcdf(double p)
    {
        if (double.IsNaN(p) || p < 0 || p > 1) return double.NaN;
        if (p == 0 || p == 1) return p == 0 ? double.NegativeInfinity : double.PositiveInfinity;
        double r = p - 0.5;
        if (r < -0.19 || r > 0.19) return p > 0.5 ? -LowerQuantile(1 - p) : LowerQuantile(p);
        // The central region (|x| &lt; 1/2): Halley on Phi(x) - 1/2 = erf(x / sqrt 2) / 2 against the exact p - 1/2, so
        // the result keeps its relative accuracy near p = 1/2.
        double x = Reference.AcklamIcdf(p);
        for (int i = 0; i < 2; i++)
        {
            double e = 0.5 * Erf(x * 0.7071067811865476) - r;
            double u = e * 2.5066282746310002 * Math.Exp(x * x / 2);
            x -= u / (1 + x * u / 2);
        }
        return x;
    }

    /// <summary>erfinv y: a quantile estimate, then Newton steps on erf t = |y| (|y| &lt;= 1/2) or erfc t = 1 - |y|.</summary>
    public static double Erfinv(double y)
    {
        if (double.IsNaN(y) || y < -1 || y > 1) return double.NaN;
        if (Math.Abs(y) == 1) return y * double.PositiveInfinity;
        double a = Math.Abs(y), t = -LowerQuantile((1 - a) / 2) * 0.70710678118654752440;
        for (int i = 0; i < 2; i++)
            t -= (a <= 0.5 ? Erf(t) - a : (1 - a) - Erfc(t)) / (1.1283791670955126 * Math.Exp(-t * t));
        return Math.CopySign(t, y);
    }

    /// <summary>x Phi(x), the exact GELU.</summary>
    public static double Gelu(double x) => x * NormalCdf(x);
}
