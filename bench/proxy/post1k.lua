-- wrk script for bench/proxy.sh: every request is a keep-alive POST /echo with a 1 KiB body,
-- which the backend (hello) sends back, so each exchange carries 1 KiB each way.
wrk.method = "POST"
wrk.path = "/echo"
wrk.body = string.rep("0123456789abcdef", 64)
wrk.headers["Content-Type"] = "application/octet-stream"
