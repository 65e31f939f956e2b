using System.Numerics;
using TP = System.Numerics.Tensors.TensorPrimitives;

namespace Kiln.Kernels.Cpu;

/// <summary>
/// Fused scaled-dot-product attention, forward and backward, blocked with an online softmax (FlashAttention-2's
/// schedule): only a <see cref="Block"/> x <see cref="Block"/> tile of scores exists at a time, never the T x T matrix.
/// Causal attention lets query i see keys j &lt;= i (top-left aligned, as PyTorch) and skips the blocks above the diagonal.
/// The tile products run on the packed <see cref="Gemm"/>. Reference: <see cref="Reference.Attention"/>.
/// </summary>
public static class Attention
{
    /// <summary>Rows of queries and keys per tile.</summary>
    public const int Block = 64;

    /// <summary>
    /// y = softmax(scale q k^T (masked)) v for <paramref name="batch"/> heads; q [batch, tq, d], k [batch, tk, d],
    /// v [batch, tk, dv], y [batch, tq, dv] contiguous from their offsets; lse [batch, tq] receives each row's
    /// log-sum-exp of the scaled, masked scores (the backward recomputes probabilities from it). With no keys, y is 0
    /// and lse is -inf.
    /// </summary>
    public static void Forward<T>(int batch, int tq, int tk, int d, int dv, T[] q, int qOff, T[] k, int kOff, T[] v, int vOff,
        bool causal, T scale, T[] y, int yOff, T[] lse, int lseOff) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int qBlocks = (tq + Block - 1) / Block;
        long work = 2L * batch * tq * tk * (d + dv);
        Strided.Parallel(batch * qBlocks, work, (s, e) =>
        {
            var sc = Strided.Rent<T>(Block * Block);
            var m = new T[Block]; var l = new T[Block];
            for (int task = s; task < e; task++)
            {
                int b = task / qBlocks, i0 = task % qBlocks * Block, br = Math.Min(Block, tq - i0);
                int qi = qOff + (b * tq + i0) * d, yi = yOff + (b * tq + i0) * dv;
                new Span<T>(y, yi, br * dv).Clear();
                Array.Fill(m, T.NegativeInfinity); Array.Clear(l);
                int jEnd = causal ? Math.Min(tk, i0 + br) : tk;
                for (int j0 = 0; j0 < jEnd; j0 += Block)
                {
                    int bc = Math.Min(Block, jEnd - j0);
                    // Scores of this tile: scale Q_i K_j^T (K read transposed through its strides).
                    Gemm.Run(br, bc, d, scale, q, qi, d, 1, k, kOff + (b * tk + j0) * d, 1, d, T.Zero, sc, 0, bc, threads: 1);
                    for (int r = 0; r < br; r++)
                    {
                        var row = sc.AsSpan(r * bc, bc);
                        int valid = causal ? Math.Clamp(i0 + r - j0 + 1, 0, bc) : bc;
                        row[valid..].Clear();
                        if (valid == 0) continue;
                        var live = row[..valid];
                        T mNew = T.Max(m[r], TP.Max<T>(live));
                        TP.Subtract(live, mNew, live);
                        Elementwise.Unary(UnaryOp.Exp, live, live);
                        T corr = T.Exp(m[r] - mNew);
                        l[r] = l[r] * corr + TP.Sum<T>(live);
                        m[r] = mNew;
                        if (corr != T.One)
                        {
                            var yr = y.AsSpan(yi + r * dv, dv);
                            TP.Multiply(yr, corr, yr);
                        }
                    }
                    // Y_i += P V_j.
                    Gemm.Run(br, dv, bc, T.One, sc, 0, bc, 1, v, vOff + (b * tk + j0) * dv, dv, 1, T.One, y, yi, dv, threads: 1);
                }
                for (int r = 0; r < br; r++)
                {
                    lse[lseOff + b * tq + i0 + r] = l[r] == T.Zero ? T.NegativeInfinity : m[r] + T.Log(l[r]);
                    if (l[r] != T.Zero)
                    {
                        var yr = y.AsSpan(yi + r * dv, dv);
                        TP.Multiply(yr, T.One / l[r], yr);
                    }
                }
            }
            Strided.Return(sc);
        });
    }

    /// <summary>
    /// Gradients of <see cref="Forward{T}"/>: given y, its gradient gy and lse, writes gq [batch, tq, d], gk [batch, tk, d] and
    /// gv [batch, tk, dv] (contiguous from their offsets, overwritten). Probabilities are recomputed tile by tile from lse:
    /// P = exp(S - lse), dV += P^T dY, dS = P (dY V^T - rowsum(dY y)), dQ += scale dS K, dK += scale dS^T Q.
    /// Heads run in parallel; each head's tiles in a fixed order, so results do not depend on the thread count.
    /// </summary>
    public static void Backward<T>(int batch, int tq, int tk, int d, int dv, T[] q, int qOff, T[] k, int kOff, T[] v, int vOff,
        T[] y, int yOff, T[] gy, int gyOff, T[] lse, int lseOff, bool causal, T scale, T[] gq, int gqOff, T[] gk, int gkOff, T[] gv, int gvOff)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        long work = 4L * batch * tq * tk * (d + dv);
        Strided.Parallel(batch, work, (s, e) =>
        {
            var p = Strided.Rent<T>(Block * Block); var dp = Strided.Rent<T>(Block * Block);
            var rowDot = Strided.Rent<T>(tq);
            for (int b = s; b < e; b++)
            {
                int qh = qOff + b * tq * d, kh = kOff + b * tk * d, vh = vOff + b * tk * dv, yh = yOff + b * tq * dv, gyh = gyOff + b * tq * dv;
                int gqh = gqOff + b * tq * d, gkh = gkOff + b * tk * d, gvh = gvOff + b * tk * dv, lh = lseOff + b * tq;
                new Span<T>(gq, gqh, tq * d).Clear(); new Span<T>(gk, gkh, tk * d).Clear(); new Span<T>(gv, gvh, tk * dv).Clear();
                for (int i = 0; i < tq; i++) rowDot[i] = TP.Dot<T>(y.AsSpan(yh + i * dv, dv), gy.AsSpan(gyh + i * dv, dv));
                for (int j0 = 0; j0 < tk; j0 += Block)
                {
                    int bc = Math.Min(Block, tk - j0);
                    for (int i0 = causal ? j0 / Block * Block : 0; i0 < tq; i0 += Block)
                    {
                        int br = Math.Min(Block, tq - i0);
                        Gemm.Run(br, bc, d, scale, q, qh + i0 * d, d, 1, k, kh + j0 * d, 1, d, T.Zero, p, 0, bc, threads: 1);
                        for (int r = 0; r < br; r++)
                        {
                            var row = p.AsSpan(r * bc, bc);
                            int valid = causal ? Math.Clamp(i0 + r - j0 + 1, 0, bc) : bc;
                            TP.Subtract(row[..valid], lse[lh + i0 + r], row[..valid]);
                            Elementwise.Unary(UnaryOp.Exp, row[..valid], row[..valid]);
                            row[valid..].Clear();
                        }
                        // dV_j += P^T dY_i; dP = dY_i V_j^T.
                        Gemm.Run(bc, dv, br, T.One, p, 0, 1, bc, gy, gyh + i0 * dv, dv, 1, T.One, gv, gvh + j0 * dv, dv, threads: 1);
                        Gemm.Run(br, bc, dv, T.One, gy, gyh + i0 * dv, dv, 1, v, vh + j0 * dv, 1, dv, T.Zero, dp, 0, bc, threads: 1);
                        for (int r = 0; r < br; r++)
                        {
                            var pr = p.AsSpan(r * bc, bc); var dr = dp.AsSpan(r * bc, bc);
                            TP.Subtract(dr, rowDot[i0 + r], dr);
                            TP.Multiply(pr, dr, pr);
                        }
                        // dQ_i += scale dS K_j; dK_j += scale dS^T Q_i.
                        Gemm.Run(br, d, bc, scale, p, 0, bc, 1, k, kh + j0 * d, d, 1, T.One, gq, gqh + i0 * d, d, threads: 1);
                        Gemm.Run(bc, d, br, scale, p, 0, 1, bc, q, qh + i0 * d, d, 1, T.One, gk, gkh + j0 * d, d, threads: 1);
                    }
                }
            }
            Strided.Return(p); Strided.Return(dp); Strided.Return(rowDot);
        });
    }
}
