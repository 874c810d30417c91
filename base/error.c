#include "pathflow/error.h"

const char *pf_strerror(int code) {
  switch (code) {
    case PF_OK:
      return "success";
#define PF_ERRNO_TEXT(name, c, text) \
  case PF_##name:                    \
    return text;
      PF_ERRNO_MAP(PF_ERRNO_TEXT)
#undef PF_ERRNO_TEXT
    default:
      return "unknown error";
  }
}

const char *pf_errname(int code) {
  switch (code) {
    case PF_OK:
      return "PF_OK";
#define PF_ERRNO_NAME(name, c, text) \
  case PF_##name:                    \
    return "PF_" #name;
      PF_ERRNO_MAP(PF_ERRNO_NAME)
#undef PF_ERRNO_NAME
    default:
      return "PF_E?";
  }
}
