/*
 * bcryptprimitives.dll shim for running the Windows build of wirespeed under
 * Wine 8 (Debian 12).
 *
 * Rust's std (1.78 and later) gets its random bytes (HashMap seeds, ...) from
 * ProcessPrng in bcryptprimitives.dll and aborts at start-up if it cannot
 * find it. Wine 8's bcryptprimitives.dll does not export ProcessPrng (it was
 * added in Wine 9), so the .exe dies before main. This DLL, placed beside the
 * .exe and preferred with WINEDLLOVERRIDES="bcryptprimitives=n,b", exports
 * ProcessPrng and forwards it to SystemFunction036 (RtlGenRandom) in
 * advapi32, which Wine has long had. Test use only: not for real Windows.
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
