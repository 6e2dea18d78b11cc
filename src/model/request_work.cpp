// The work of a request, counted from the model's shapes (RequestWork): what
// the bench divides the measured stage times by.
#include "model/pipeline_impl.hpp"
#include "varps/error.hpp"

namespace varps {

namespace {

constexpr double kFloat = sizeof(float);

// One batched pass of `rows` backbone rows (image_rows after aggregation)
// per scale, with `images` decoded.
RequestWork batched_work(const Pipeline::Impl& impl, int64_t rows, int64_t image_rows, int64_t images) {
  const VarConfig& c = impl.var->config();
  const double w_elem = static_cast<double>(impl.backend->matrix_element_bytes());
  const double kv_elem = static_cast<double>(impl.backend->kv_element_bytes());
  const double C = c.embed_dim, hid = c.mlp_hidden, V = c.vocab_size, R = static_cast<double>(rows),
               N = static_cast<double>(image_rows);
  const double T = impl.adapter ? static_cast<double>(impl.adapter->prefix_tokens) : 0.0;
  const double P = impl.adapter ? static_cast<double>(impl.adapter->streams) : 1.0;
  const double block_weights = 3 * C * C + C * C + 2 * C * hid;  // qkv, proj, fc1, fc2

  RequestWork w;
  for (int si = 0; si < c.num_scales(); ++si) {
    const double l = static_cast<double>(c.patch_nums[si]) * c.patch_nums[si];
    const double keys = T + static_cast<double>(c.first_token_of_scale(si)) + l;  // per query
    StageWork s;
    // Per block: the four products, then q·kᵀ and p·v over every key.
    s.flops += c.depth * (2 * R * l * block_weights + 4 * R * l * keys * C);
    s.bytes += c.depth * (block_weights * w_elem + 2 * R * keys * C * kv_elem + 2 * R * l * C * kv_elem);
    if (impl.adapter) {  // aggregate.0 [C, P·C] and aggregate.2 [P, C]
      s.flops += 2 * N * l * (P * C * C + C * P);
      s.bytes += (P * C * C + C * P) * w_elem;
    }
    s.flops += 2 * N * l * C * V;  // head
    s.bytes += V * C * w_elem + N * l * V * kFloat;
    w.transformer.push_back(s);
  }

  const double B = static_cast<double>(images);
  const int64_t S = c.patch_nums.back();
  // The decoder reads its weights once per pass of decode_images_per_pass images.
  const int64_t per_pass = impl.vae->decode_images_per_pass(S, images);
  const double passes = static_cast<double>((images + per_pass - 1) / per_pass);
  impl.vae->for_each_decoder_layer(
      S, false,
      [&](const Conv2dWeights& conv, int64_t side) {
        const double hw = static_cast<double>(side) * side, taps = static_cast<double>(conv.k) * conv.k;
        const double weights = static_cast<double>(conv.co) * conv.ci * taps;
        w.decode.flops += 2 * B * weights * hw;
        w.decode.bytes += passes * weights * w_elem + B * (static_cast<double>(conv.ci) + conv.co) * hw * kFloat;
      },
      [&](int64_t channels, int64_t side) {
        const double p = static_cast<double>(side) * side;
        w.decode.flops += 4 * B * p * p * static_cast<double>(channels);
        w.decode.bytes += B * (3 * channels * p + p * p) * kFloat;  // q, k, v and the weights
      });
  return w;
}

}  // namespace

RequestWork Pipeline::work(const std::vector<ImageRequest>& requests, Schedule schedule) const {
  if (!impl_->var) throw Error("this pipeline has no VAR transformer");
  if (schedule == Schedule::Batched) {
    const int64_t rows = rows_for(requests);
    return batched_work(*impl_, rows, rows / adapter_streams(), static_cast<int64_t>(requests.size()));
  }
  RequestWork all;
  for (const ImageRequest& r : requests) {
    const int64_t rows = rows_for({r});
    const RequestWork one = batched_work(*impl_, rows, rows / adapter_streams(), 1);
    all.transformer.resize(one.transformer.size());
    for (size_t si = 0; si < one.transformer.size(); ++si) all.transformer[si] += one.transformer[si];
    all.decode += one.decode;
  }
  return all;
}

}  // namespace varps
