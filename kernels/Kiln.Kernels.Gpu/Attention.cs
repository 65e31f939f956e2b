using ILGPU;

namespace Kiln.Kernels.Gpu;

/// <summary>
/// Fused scaled-dot-product attention, one thread per query row (forward and dq) or key row (dk, dv): each thread
/// streams over the other side with an online softmax, so the Tq x Tk matrix is never stored. The output row doubles as
/// the accumulator, rescaled whenever the running maximum grows. Reference: <see cref="Reference.Attention"/>.
/// </summary>
public static class Attention
{
    /// <summary>Problem sizes: Tq, Tk, head dims D (q, k) and Dv (v), and causal (1: key j &lt;= query i).</summary>
    public struct Dims
    {
        /// <summary>Query rows per batch.</summary>
        public int Tq;
        /// <summary>Key rows per batch.</summary>
        public int Tk;
        /// <summary>q and k width.</summary>
        public int D;
        /// <summary>v width.</summary>
        public int Dv;
        /// <summary>1 for a causal (top-left aligned) mask.</summary>
        public int Causal;
        /// <summary>Element offsets of q, k, v, y, lse, gy, gq, gk and gv in their buffers (views need not start at 0).</summary>
        public int QOff, KOff, VOff, YOff, LseOff, GyOff, GqOff, GkOff, GvOff;
    }

    static int KeyEnd(Dims s, int i) => s.Causal != 0 ? (i + 1 < s.Tk ? i + 1 : s.Tk) : s.Tk;

    static T Score<T, TF>(ArrayView<T> q, int qo, ArrayView<T> k, int ko, int d, T scale) where T : unmanaged where TF : struct, IFloat<T>
    {
        TF f = default;
        T s = f.Zero;
        for (int c = 0; c < d; c++) s = f.Add(s, f.Mul(q[qo + c], k[ko + c]));
        return f.Mul(s, scale);
    }

    /// <summary>y[r, :] = softmax(scale q_r k^T) v and lse[r] = log sum exp(scale q_r k^T) for query row r = b Tq + i
    /// (-inf, with y 0, when no key is visible). q, k, v, y, lse contiguous from their offsets in <paramref name="s"/>.</summary>
    public static void Forward<T, TF>(Index1D r, ArrayView<T> q, ArrayView<T> k, ArrayView<T> v, ArrayView<T> y, ArrayView<T> lse, Dims s, T scale)
        where T : unmanaged where TF : struct, IFloat<T>
    {
        TF f = default;
        int b = r / s.Tq, i = r % s.Tq, yo = r * s.Dv, end = KeyEnd(s, i);
        T m = f.Lowest, l = f.Zero;
        for (int c = 0; c < s.Dv; c++) y[s.YOff + yo + c] = f.Zero;
        for (int j = 0; j < end; j++)
        {
            int kr = b * s.Tk + j;
            T sc = Score<T, TF>(q, s.QOff + r * s.D, k, s.KOff + kr * s.D, s.D, scale);
            if (f.Lt(m, sc))
            {
                T fac = f.Exp(f.Sub(m, sc));
                for (int c = 0; c < s.Dv; c++) y[s.YOff + yo + c] = f.Mul(y[s.YOff + yo + c], fac);
                l = f.Mul(l, fac);
                m = sc;
            }
            T p = f.Exp(f.Sub(sc, m));
            l = f.Add(l, p);
            for (int c = 0; c < s.Dv; c++) y[s.YOff + yo + c] = f.Add(y[s.YOff + yo + c], f.Mul(p, v[s.VOff + kr * s.Dv + c]));
        }
        if (f.Lt(f.Zero, l))
        {
            T inv = f.Div(f.One, l);
            for (int c = 0; c < s.Dv; c++) y[s.YOff + yo + c] = f.Mul(y[s.YOff + yo + c], inv);
            lse[s.LseOff + r] = f.Add(m, f.Log(l));
        }
        else lse[s.LseOff + r] = f.Lowest;
    }

    /// <summary>delta[r] = gy[r, :] . y[r, :], the row term of the softmax gradient.</summary>
    public static void Delta<T, TF>(Index1D r, ArrayView<T> y, ArrayView<T> gy, ArrayView<T> delta, Dims s)
        where T : unmanaged where TF : struct, IFloat<T>
    {
        TF f = default;
        T sum = f.Zero;
        for (int c = 0; c < s.Dv; c++) sum = f.Add(sum, f.Mul(gy[s.GyOff + r * s.Dv + c], y[s.YOff + r * s.Dv + c]));
        delta[r] = sum;
    }

    /// <summary>gq[r, :] = scale sum_j p_rj (gy_r . v_j - delta_r) k_j for query row r.</summary>
    public static void GradQ<T, TF>(Index1D r, ArrayView<T> q, ArrayView<T> k, ArrayView<T> v, ArrayView<T> gy, ArrayView<T> lse, ArrayView<T> delta, ArrayView<T> gq, Dims s, T scale)
        where T : unmanaged where TF : struct, IFloat<T>
    {
        TF f = default;
        int b = r / s.Tq, i = r % s.Tq, end = KeyEnd(s, i);
        for (int c = 0; c < s.D; c++) gq[s.GqOff + r * s.D + c] = f.Zero;
        for (int j = 0; j < end; j++)
        {
            int kr = b * s.Tk + j;
            T p = f.Exp(f.Sub(Score<T, TF>(q, s.QOff + r * s.D, k, s.KOff + kr * s.D, s.D, scale), lse[s.LseOff + r]));
            T dp = f.Zero;
            for (int c = 0; c < s.Dv; c++) dp = f.Add(dp, f.Mul(gy[s.GyOff + r * s.Dv + c], v[s.VOff + kr * s.Dv + c]));
            T w = f.Mul(f.Mul(p, f.Sub(dp, delta[r])), scale);
            for (int c = 0; c < s.D; c++) gq[s.GqOff + r * s.D + c] = f.Add(gq[s.GqOff + r * s.D + c], f.Mul(w, k[s.KOff + kr * s.D + c]));
        }
    }

    /// <summary>For key row t = b Tk + j: gv[t, :] = sum_i p_ij gy_i and gk[t, :] = scale sum_i p_ij (gy_i . v_j - delta_i) q_i.</summary>
    public static void GradKV<T, TF>(Index1D t, ArrayView<T> q, ArrayView<T> k, ArrayView<T> v, ArrayView<T> gy, ArrayView<T> lse, ArrayView<T> delta, ArrayView<T> gk, ArrayView<T> gv, Dims s, T scale)
        where T : unmanaged where TF : struct, IFloat<T>
    {
        TF f = default;
        int b = t / s.Tk, j = t % s.Tk;
        for (int c = 0; c < s.D; c++) gk[s.GkOff + t * s.D + c] = f.Zero;
        for (int c = 0; c < s.Dv; c++) gv[s.GvOff + t * s.Dv + c] = f.Zero;
        for (int i = s.Causal != 0 ? j : 0; i < s.Tq; i++)
        {
            int r = b * s.Tq + i;
            T p = f.Exp(f.Sub(Score<T, TF>(q, s.QOff + r * s.D, k, s.KOff + t * s.D, s.D, scale), lse[s.LseOff + r]));
            T dp = f.Zero;
            for (int c = 0; c < s.Dv; c++)
            {
                T g = gy[s.GyOff + r * s.Dv + c];
                dp = f.Add(dp, f.Mul(g, v[s.VOff + t * s.Dv + c]));
                gv[s.GvOff + t * s.Dv + c] = f.Add(gv[s.GvOff + t * s.Dv + c], f.Mul(p, g));
            }
            T w = f.Mul(f.Mul(p, f.Sub(dp, delta[r])), scale);
            for (int c = 0; c < s.D; c++) gk[s.GkOff + t * s.D + c] = f.Add(gk[s.GkOff + t * s.D + c], f.Mul(w, q[s.QOff + r * s.D + c]));
        }
    }
}

/// <summary>The typed kernels of <see cref="Attention"/> for one floating dtype.</summary>
public static class AttentionKernels<T, TF> where T : unmanaged where TF : struct, IFloat<T>
{
    /// <summary>attention.forward: one thread per query row.</summary>
    public static readonly Kernel<ArrayView<T>, ArrayView<T>, ArrayView<T>, ArrayView<T>, ArrayView<T>, Attention.Dims, T> Forward =
        new($"attention.forward.{Dt.Of<TF>()}", Attention.Forward<T, TF>);
    /// <summary>attention.delta: rowwise dot of y and gy.</summary>
    public static readonly Kernel<ArrayView<T>, ArrayView<T>, ArrayView<T>, Attention.Dims> Delta = new($"attention.delta.{Dt.Of<TF>()}", Attention.Delta<T, TF>);
    /// <summary>attention.grad_q: one thread per query row.</summary>
    public static readonly Kernel<ArrayView<T>, ArrayView<T>, ArrayView<T>, ArrayView<T>, ArrayView<T>, ArrayView<T>, ArrayView<T>, Attention.Dims, T> GradQ =
        new($"attention.grad_q.{Dt.Of<TF>()}", Attention.GradQ<T, TF>);
    /// <summary>attention.grad_kv: one thread per key row.</summary>
    public static readonly Kernel<ArrayView<T>, ArrayView<T>, ArrayView<T>, ArrayView<T>, ArrayView<T>, ArrayView<T>, ArrayView<T>, ArrayView<T>, Attention.Dims, T> GradKV =
        new($"attention.grad_kv.{Dt.Of<TF>()}", Attention.GradKV<T, TF>);
}
