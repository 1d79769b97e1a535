-- Argo CD health of a QuantEval, read from its conditions. Goes in argocd-cm as
-- resource.customizations.health.quanteval.io_QuantEval (see the README).
local hs = {status = "Progressing", message = "waiting for the operator"}
if obj.status == nil or obj.status.conditions == nil then
  return hs
end
if (obj.status.observedGeneration or 0) < (obj.metadata.generation or 0) then
  return hs
end
local by_type = {}
for _, c in ipairs(obj.status.conditions) do
  by_type[c.type] = c
end
local valid, succeeded, progressing = by_type["Valid"], by_type["Succeeded"], by_type["Progressing"]
if valid ~= nil and valid.status == "False" then
  return {status = "Degraded", message = valid.message}
end
if succeeded ~= nil and succeeded.status == "True" then
  return {status = "Healthy", message = succeeded.message}
end
if succeeded ~= nil and succeeded.status == "False" then
  return {status = "Degraded", message = succeeded.message}
end
if progressing ~= nil and progressing.reason == "Suspended" then
  return {status = "Suspended", message = progressing.message}
end
if progressing ~= nil then
  hs.message = progressing.message
end
return hs
