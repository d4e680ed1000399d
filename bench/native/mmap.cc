// A tiny N-API addon for the bigfile benchmark only (never a dependency of
// the library): map(path, offset, length) maps that window of a file
// read-only and returns an external ArrayBuffer over the mapping, unmapped
// when the buffer is collected (one ArrayBuffer is at most 4 GiB here, so a
// bigger file is mapped as several windows). Built at bench time by bench/native/build.ts with g++ and the
// node headers; the benchmark reports "not available" when it cannot be.
#include <node_api.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <string>

static void unmap(napi_env, void* data, void* hint) {
  munmap(data, reinterpret_cast<size_t>(hint));
}

static napi_value Throw(napi_env env, const char* what) {
  napi_throw_error(env, nullptr, what);
  return nullptr;
}

static napi_value Map(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  if (napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr) != napi_ok || argc < 3) return Throw(env, "map(path, offset, length): arguments missing");
  int64_t offset = 0, length = 0;
  if (napi_get_value_int64(env, argv[1], &offset) != napi_ok || napi_get_value_int64(env, argv[2], &length) != napi_ok || offset < 0 || length <= 0 || offset % 4096 != 0) {
    return Throw(env, "map: offset (a multiple of 4096) and length (positive) must be numbers");
  }
  size_t len = 0;
  if (napi_get_value_string_utf8(env, argv[0], nullptr, 0, &len) != napi_ok) return Throw(env, "map(path): path must be a string");
  std::string path(len, '\0');
  napi_get_value_string_utf8(env, argv[0], &path[0], len + 1, &len);
  int fd = open(path.c_str(), O_RDONLY);
  if (fd < 0) return Throw(env, "map: open failed");
  struct stat st;
  if (fstat(fd, &st) != 0 || offset + length > st.st_size) { close(fd); return Throw(env, "map: the window passes the end of the file"); }
  size_t size = static_cast<size_t>(length);
  void* p = mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, static_cast<off_t>(offset));
  close(fd);
  if (p == MAP_FAILED) return Throw(env, "map: mmap failed");
  madvise(p, size, MADV_SEQUENTIAL);
  napi_value ab;
  if (napi_create_external_arraybuffer(env, p, size, unmap, reinterpret_cast<void*>(size), &ab) != napi_ok) {
    munmap(p, size);
    return Throw(env, "map: external array buffers are not allowed here");
  }
  return ab;
}

static napi_value Init(napi_env env, napi_value exports) {
  napi_value fn;
  napi_create_function(env, "map", NAPI_AUTO_LENGTH, Map, nullptr, &fn);
  napi_set_named_property(env, exports, "map", fn);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
