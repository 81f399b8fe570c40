/*
 * bcryptprimitives.dll shim for running the Windows build of wirespeed under
 * Wine 8 (Debian 12).
 *
 * Rust's std (1.78 and later) imports ProcessPrng from bcryptprimitives.dll
 * for its random bytes (HashMap seeds, ...). Wine 8 ships no
 * bcryptprimitives.dll at all (later Wine releases do), so the loader
 * refuses to start the .exe ("Library bcryptprimitives.dll ... not found",
 * status c0000135, exit code 53) before main runs. This DLL, placed beside
 * the .exe (WINEDLLOVERRIDES="bcryptprimitives=n,b" makes the preference
 * explicit should a builtin exist), exports ProcessPrng and forwards it to
 * SystemFunction036 (RtlGenRandom) in advapi32, which Wine has long had.
 * Test use only: never ship it for real Windows.
 *
 * Build: x86_64-w64-mingw32-gcc -shared -O2 -o bcryptprimitives.dll \
 *            bcryptprimitives.c bcryptprimitives.def -ladvapi32
 */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    /* RtlGenRandom takes a ULONG length: feed it in chunks. */
    while (len > 0) {
        ULONG n = len > 0x40000000 ? 0x40000000 : (ULONG)len;
        if (!SystemFunction036(data, n))
            return FALSE;
        data += n;
        len -= n;
    }
    return TRUE;
}
