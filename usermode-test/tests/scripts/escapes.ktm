# Keys are bytes: \xNN escapes in and out; LIST is in bytewise order.
put - a\x00 nul
put - a\xff high
put - aB upper
put - ab lower
put - a\x20b space
put - A capital
list - a
list -
get - a\x00
get - a\x20b
put - bin \x00\x01
get - bin
get - \x01\x02
