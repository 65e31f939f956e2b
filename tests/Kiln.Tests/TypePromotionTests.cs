using Xunit;
using R = Kiln.TypePromotion.Role;

namespace Kiln.Tests;

/// <summary>
/// Type promotion against a table written from PyTorch's documented rules (torch.promote_types, torch.result_type and
/// the examples of its type-promotion notes), and the mixed-dtype cases that used to give silent wrong answers.
/// </summary>
public class TypePromotionTests
{
    static readonly DType[] Order = [DType.Bool, DType.Int32, DType.Int64, DType.Float16, DType.BFloat16, DType.Float32, DType.Float64];

    // torch.promote_types over Order x Order (b = Bool, i = Int32, l = Int64, h = Float16, B = BFloat16, f = Float32, d = Float64).
    static readonly string[] PromoteTable =
    [
        "bilhBfd",
        "iilhBfd",
        "lllhBfd",
        "hhhhffd",
        "BBBfBfd",
        "ffffffd",
        "ddddddd",
    ];

    static DType Code(char c) => c switch
    {
        'b' => DType.Bool, 'i' => DType.Int32, 'l' => DType.Int64, 'h' => DType.Float16, 'B' => DType.BFloat16, 'f' => DType.Float32, _ => DType.Float64,
    };

    [Fact]
    public void Promote_types_matches_the_table_for_every_pair()
    {
        for (int i = 0; i < Order.Length; i++)
            for (int j = 0; j < Order.Length; j++)
            {
                Assert.Equal(Code(PromoteTable[i][j]), TypePromotion.Promote(Order[i], Order[j]));
                Assert.Equal(Code(PromoteTable[i][j]), TypePromotion.ResultType((Order[i], R.Dimensioned), (Order[j], R.Dimensioned)));
            }
    }

    // A dimensioned tensor of each dtype in Order with a .NET double, a .NET long and a .NET bool.
    static readonly string[] ScalarTable = ["flb", "fii", "fll", "hhh", "BBB", "fff", "ddd"];

    // A dimensioned tensor (rows) with a zero-dimensional tensor (columns): the zero-dim one counts only when its category is higher.
    static readonly string[] ZeroDimTable =
    [
        "bilhBfd",
        "iiihBfd",
        "lllhBfd",
        "hhhhhhh",
        "BBBBBBB",
        "fffffff",
        "ddddddd",
    ];

    [Fact]
    public void Scalars_and_zero_dim_tensors_only_lift_the_category()
    {
        for (int i = 0; i < Order.Length; i++)
        {
            Assert.Equal(Code(ScalarTable[i][0]), TypePromotion.ResultType((Order[i], R.Dimensioned), (DType.Float64, R.Scalar)));
            Assert.Equal(Code(ScalarTable[i][1]), TypePromotion.ResultType((Order[i], R.Dimensioned), (DType.Int64, R.Scalar)));
            Assert.Equal(Code(ScalarTable[i][2]), TypePromotion.ResultType((Order[i], R.Dimensioned), (DType.Bool, R.Scalar)));
            for (int j = 0; j < Order.Length; j++)
                Assert.Equal(Code(ZeroDimTable[i][j]), TypePromotion.ResultType((Order[i], R.Dimensioned), (Order[j], R.ZeroDim)));
        }
    }

    [Fact]
    public void The_examples_of_pytorchs_promotion_notes()
    {
        var f = Tensor.Ones([1], DType.Float32); var d = Tensor.Ones([1], DType.Float64);
        var i = Tensor.Ones([1], DType.Int32); var l = Tensor.Ones([1], DType.Int64); var b = Tensor.Ones([1], DType.Bool);
        var lZero = Tensor.Scalar(1, DType.Int64);
        Assert.Equal(DType.Int64, TypePromotion.ResultType((DType.Int64, R.Scalar), (DType.Int64, R.Scalar)));   // torch.add(5, 5)
        Assert.Equal(DType.Int32, (i + 5).DType);
        Assert.Equal(DType.Int32, (i + lZero).DType);
        Assert.Equal(DType.Int64, (l + i).DType);
        Assert.Equal(DType.Int64, (b + l).DType);
        Assert.Equal(DType.Float64, (f + d).DType);
        Assert.Equal(DType.Int32, (b + i).DType);
        Assert.Equal(DType.Float32, (l + f).DType);
        Assert.Equal(DType.Float32, Tensor.ResultType(f, 2.5));
        Assert.Equal(DType.Float64, Tensor.ResultType(d, 2L));
    }

    static Tensor Longs(params long[] v) => Tensor.FromArray(v);

    [Fact]
    public void An_integer_tensor_meets_a_double_in_float32_not_truncated()
    {
        var seven = Longs(7);
        Assert.Equal([3.5f], (seven * 0.5).ToArray<float>());
        Assert.Equal([7f * 2.9f], (seven * 2.9).ToArray<float>());   // computed in Float32, as PyTorch does
        Assert.Equal([7.5f], (seven + 0.5).ToArray<float>());
        Assert.Equal([3.5f], (seven / 2.0).ToArray<float>());
        Assert.Equal([-3.5f], (Longs(-7) / Longs(2)).ToArray<float>());   // true division
        Assert.Equal([-3.5f], (Longs(-7) / 2).ToArray<float>());
        Assert.Equal([14L], (seven * 2).ToArray<long>());                // a .NET integer keeps the integer dtype
        Assert.Equal([true], (seven > 6.5).ToArray<bool>());
    }

    [Fact]
    public void Float32_and_float64_operands_meet_in_float64_and_gradients_return_in_each_dtype()
    {
        var a = Tensor.FromArray(new[] { 1.5f, -2f }).RequiresGrad_();
        var b = Tensor.FromArray(new[] { 0.25, 4.0 }).RequiresGrad_();
        var y = a * b;
        Assert.Equal(DType.Float64, y.DType);
        y.Sum().Backward();
        Assert.Equal(DType.Float32, a.Grad!.DType);
        Assert.Equal([0.25f, 4f], a.Grad.ToArray<float>());
        Assert.Equal(DType.Float64, b.Grad!.DType);
        Assert.Equal([1.5, -2.0], b.Grad.ToArray<double>());
        // A float64 .NET scalar does not widen a float32 tensor.
        Assert.Equal(DType.Float32, (a.Detach() * 0.1).DType);
    }

    [Fact]
    public void In_place_ops_refuse_a_result_the_target_cannot_hold()
    {
        var ints = Longs(1, 2);
        var e = Assert.Throws<ArgumentException>(() => ints.Add_(0.5));
        Assert.Contains("Float32", e.Message);
        Assert.Contains("Int64", e.Message);
        Assert.Throws<ArgumentException>(() => ints.Div_(Longs(2, 2)));
        Assert.Equal([1L, 2L], ints.ToArray<long>());   // untouched
        var f = Tensor.FromArray(new[] { 1f, 2f });
        f.Add_(Tensor.FromArray(new[] { 0.5, 0.25 }));   // Float64 into Float32 stays in the floating category
        Assert.Equal([1.5f, 2.25f], f.ToArray<float>());
        ints.Add_(3);
        Assert.Equal([4L, 5L], ints.ToArray<long>());
    }

    [Fact]
    public void Comparisons_and_where_promote_their_operands()
    {
        var i = Tensor.FromArray(new[] { 1, 2, 3 });
        var f = Tensor.FromArray(new[] { 1.5f, 1.5f, 3f });
        Assert.Equal([false, true, true], (i >= f).ToArray<bool>());
        var w = Tensor.Where(i > 1L, f, i);
        Assert.Equal(DType.Float32, w.DType);
        Assert.Equal([1f, 1.5f, 3f], w.ToArray<float>());
    }

    [Fact]
    public void Floor_and_trunc_division_remainder_and_fmod_follow_python_and_c()
    {
        var a = Longs(7, -7, 7, -7, 6);
        var b = Longs(2, 2, -2, -2, 3);
        Assert.Equal([3L, -4L, -4L, 3L, 2L], a.FloorDivide(b).ToArray<long>());
        Assert.Equal([3L, -3L, -3L, 3L, 2L], a.Div(b, DivRounding.Trunc).ToArray<long>());
        Assert.Equal([1L, 1L, -1L, -1L, 0L], a.Remainder(b).ToArray<long>());
        Assert.Equal([1L, -1L, 1L, -1L, 0L], a.Fmod(b).ToArray<long>());
        var f = Tensor.FromArray(new[] { 7.5f, -7.5f });
        Assert.Equal([3f, -4f], f.FloorDivide(Tensor.FromArray(new[] { 2f, 2f })).ToArray<float>());
        Assert.Equal([1.5f, 0.5f], f.Remainder(Tensor.FromArray(new[] { 2f, 2f })).ToArray<float>());
        Assert.Equal([1.5f, -1.5f], f.Fmod(Tensor.FromArray(new[] { 2f, 2f })).ToArray<float>());
    }

    [Fact]
    public void Item_and_get_keep_every_digit_of_an_int64()
    {
        long big = (1L << 53) + 1;
        var t = Longs(big, 5);
        Assert.Equal(big, t.Get<long>(0));
        Assert.Equal(big, t.Slice(0, 0, 1).Reshape().Item<long>());
        Assert.NotEqual(big, (long)t[0]);   // the float64 indexer cannot hold it
        Assert.Throws<InvalidCastException>(() => t.Get<int>(1));
        Assert.Throws<ArgumentOutOfRangeException>(() => t.Get<long>(2));
    }
}
