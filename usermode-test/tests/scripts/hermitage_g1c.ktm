# Hermitage G1c, circular information flow: each reads a key the other wrote. Prevented at
# every level: neither sees the other's uncommitted write.
put - test/1 10
put - test/2 20
begin T1
begin T2
put T1 test/1 11
put T2 test/2 22
get T1 test/2       # 20, not T2's 22
get T2 test/1       # 10, not T1's 11
commit T1
commit T2
